// An ASP.NET Core app of its own that also serves GPT-2 through OpenAI's API, in its own pipeline:
// its routes, its middleware, and the model's endpoints under /ai (POST /ai/v1/chat/completions, ...).
// Usage: WebApi [--Model MODEL] [--urls URL]
using NativeGpt2.Server;

var builder = WebApplication.CreateBuilder(args);
var model = builder.Configuration["Model"] ?? Path.Combine(AppContext.BaseDirectory, "models", "shakespeare-char");
builder.Services.AddNativeGpt2Server(model,
    configureModel: o => o.ModelId = "bard",
    configureServer: o => o.MaxConcurrentRequests = 2);

var app = builder.Build();
app.Use(async (context, next) =>
{
    // The app's own middleware sees the model's requests like any other.
    context.Response.Headers["X-Served-By"] = "WebApi sample";
    await next();
});
app.MapGet("/", () => "A web app with GPT-2 behind /ai/v1 (OpenAI-compatible).");
app.MapNativeGpt2OpenAI("/ai");
app.Run();
