using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using NativeGpt2.AI;

namespace NativeGpt2.Server;

/// <summary>Registers what the OpenAI-compatible endpoints need.</summary>
public static class ServerServiceCollectionExtensions
{
    /// <summary>
    /// Registers the model from <paramref name="model"/> with its Microsoft.Extensions.AI clients and the batch every request's
    /// sequences decode in (<see cref="ServiceCollectionExtensions.AddNativeGpt2"/>), and the server's limits; then call
    /// <see cref="OpenAIEndpoints.MapNativeGpt2OpenAI"/> on the app.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="model">A checkpoint directory, a hub name or <c>synthetic:NAME</c>.</param>
    /// <param name="configureModel">Loading, pooling, chat template, model id and the batch's size.</param>
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
        return services;
    }
}
