using System.Globalization;

namespace TcpFork.Cli.Bench;

/// <summary>
/// The progress display's live rate: over the last second or so (not since the start, so a server that
/// slows down shows it), in the workload's unit — conn/s, MiB/s of echoed bytes, or connections held.
/// </summary>
internal sealed class LiveRate(string workload)
{
    private const double Window = 1.0;
    private readonly Queue<(double Seconds, long Count)> _samples = new();

    /// <summary>The rate shown for <paramref name="count"/> (connections, or echoed bytes for bulk) at <paramref name="seconds"/>.</summary>
    public string Describe(long count, double seconds)
    {
        _samples.Enqueue((seconds, count));
        while (_samples.Count > 2 && seconds - _samples.Peek().Seconds > Window)
        {
            _samples.Dequeue();
        }
        (double firstSeconds, long firstCount) = _samples.Peek();
        double elapsed = seconds - firstSeconds;
        double perSecond = elapsed > 0 ? (count - firstCount) / elapsed : 0;
        return workload switch
        {
            "bulk" => string.Create(CultureInfo.InvariantCulture, $"{perSecond / (1 << 20),8:F1} MiB/s"),
            "hold" => string.Create(CultureInfo.InvariantCulture, $"{count} held"),
            _ => string.Create(CultureInfo.InvariantCulture, $"{perSecond,8:F0} conn/s"),
        };
    }
}
