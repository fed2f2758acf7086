namespace NativeGpt2.Cli;

/// <summary>A one-line progress bar on a terminal: <c>downloading model.safetensors [#####-----]  50%</c>.</summary>
internal sealed class ConsoleProgressBar(TextWriter writer) : IProgress<LoadProgress>
{
    private const int Width = 30;
    private readonly object _gate = new();
    private string? _stage;
    private int _lastPercent = -1;

    public void Report(LoadProgress value)
    {
        lock (_gate)
        {
            var percent = (int)Math.Clamp(value.Fraction * 100, 0, 100);
            if (value.Stage == _stage && percent == _lastPercent) return;
            if (value.Stage != _stage && _stage is not null && _lastPercent < 100) writer.WriteLine();
            _stage = value.Stage;
            _lastPercent = percent;
            var filled = percent * Width / 100;
            writer.Write($"\r{value.Stage} [{new string('#', filled)}{new string('-', Width - filled)}] {percent,3}%");
            if (percent == 100) writer.WriteLine();
        }
    }
}
