// Semantic search over embeddings through Microsoft.Extensions.AI: embed a few documents once, then rank them
// by cosine similarity to a query. GPT-2 is no sentence encoder (mean-pooled hidden states of the final layer,
// normalized): the mechanics are the point; a model trained for embeddings ranks by meaning far better.
// Usage: SemanticSearch [QUERY] [MODEL]
using System.Numerics.Tensors;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using NativeGpt2.AI;

var query = args.Length > 0 ? args[0] : "What light through yonder window breaks?";
var model = args.Length > 1 ? args[1] : Path.Combine(AppContext.BaseDirectory, "models", "shakespeare-char");

string[] documents =
[
    "But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun.",
    "Now is the winter of our discontent made glorious summer by this sun of York.",
    "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not to praise him.",
    "To be, or not to be: that is the question.",
    "All the world's a stage, and all the men and women merely players.",
    "If music be the food of love, play on.",
];

using var services = new ServiceCollection().AddNativeGpt2(model).BuildServiceProvider();
var embedder = services.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();

var index = await embedder.GenerateAsync(documents);
var question = await embedder.GenerateVectorAsync(query);

Console.WriteLine($"query: {query}");
var ranked = documents
    .Select((text, i) => (Text: text, Score: TensorPrimitives.CosineSimilarity(question.Span, index[i].Vector.Span)))
    .OrderByDescending(hit => hit.Score)
    .Take(3);
foreach (var (text, score) in ranked) Console.WriteLine($"{score:F4}  {text}");
