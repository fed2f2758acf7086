using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using NativeGpt2.AI;
using NativeGpt2.Generation;

namespace NativeGpt2.Server;

/// <summary>Registers what the OpenAI-compatible endpoints need.</summary>
public static class ServerServiceCollectionExtensions
{
    /// <summary>
    /// Registers the model from <paramref name="model"/> with its Microsoft.Extensions.AI clients
    /// (<see cref="ServiceCollectionExtensions.AddNativeGpt2"/>) and the server's limits; then call
    /// <see cref="OpenAIEndpoints.MapNativeGpt2OpenAI"/> on the app.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="model">A checkpoint directory, a hub name or <c>synthetic:NAME</c>.</param>
    /// <param name="configureModel">Loading, pooling, chat template and model id.</param>
    /// <param name="configureServer">Concurrency, queue and body limits.</param>
    public static IServiceCollection AddNativeGpt2Server(this IServiceCollection services, string model,
        Action<NativeGpt2ServiceOptions>? configureModel = null, Action<NativeGpt2ServerOptions>? configureServer = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddNativeGpt2(model, configureModel);
        var options = new NativeGpt2ServerOptions();
        configureServer?.Invoke(options);
        options.Validate();
        services.TryAddSingleton(options);
        services.TryAddSingleton(provider => new RequestGate(provider.GetRequiredService<NativeGpt2ServerOptions>()));
        // Every request's sequences decode in one shared batch; disposed before the model, which it was made after.
        services.TryAddSingleton(provider => new GenerationBatcher(provider.GetRequiredService<Gpt2CausalLM>(), provider.GetRequiredService<NativeGpt2ServerOptions>().MaxBatchSize));
        return services;
    }
}
