namespace TcpFork.Cli.Bench;

/// <summary>How a benchmark connection can fail.</summary>
internal enum Failure
{
    Refused,
    Reset,
    Timeout,
    Mismatch,
    Short,
    Other,
}

/// <summary>What one worker thread measured; merged at the end. Written by one thread only.</summary>
internal sealed class BenchResult
{
    public long Ok;
    public long Bytes;
    public readonly long[] Failures = new long[Enum.GetValues<Failure>().Length];
    public readonly List<long> LatencyTicks = new(1024);

    public long Failed => Failures.Sum();

    public void Fail(Failure kind) => Failures[(int)kind]++;

    /// <summary>One connection of the rate workload done: <paramref name="bytes"/> moved, timed from <paramref name="startTimestamp"/>.</summary>
    public void Completed(long bytes, long startTimestamp)
    {
        Ok++;
        Bytes += bytes;
        LatencyTicks.Add(System.Diagnostics.Stopwatch.GetTimestamp() - startTimestamp);
    }

    public static BenchResult Merge(IEnumerable<BenchResult> parts)
    {
        var all = new BenchResult();
        foreach (BenchResult p in parts)
        {
            all.Ok += p.Ok;
            all.Bytes += p.Bytes;
            for (int i = 0; i < all.Failures.Length; i++)
            {
                all.Failures[i] += p.Failures[i];
            }
            all.LatencyTicks.AddRange(p.LatencyTicks);
        }
        all.LatencyTicks.Sort();
        return all;
    }

    /// <summary>The latency at quantile <paramref name="q"/> in milliseconds (nearest rank).</summary>
    public double LatencyMs(double q)
    {
        if (LatencyTicks.Count == 0)
        {
            return 0;
        }
        int rank = Math.Clamp((int)Math.Ceiling(q * LatencyTicks.Count) - 1, 0, LatencyTicks.Count - 1);
        return LatencyTicks[rank] * 1000.0 / System.Diagnostics.Stopwatch.Frequency;
    }
}
