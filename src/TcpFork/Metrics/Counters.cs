namespace TcpFork;

/// <summary>
/// The parent's side of the metrics: a few increments on the request path, into a
/// <see cref="MetricsData"/> that is either the shared block of <c>--metrics</c> or, without it, a block
/// in parent-only memory. Allocation-free, no system call.
/// </summary>
internal sealed unsafe class Counters
{
    public Counters(MetricsData* data) => Data = data;

    public MetricsData* Data { get; }

    /// <summary>Counters nobody reads but <see cref="TcpForkMeter"/>: in parent-only memory (no page shared with a child).</summary>
    public static Counters Private(ParentMemory memory) => new(memory.Allocate<MetricsData>(1));

    /// <summary>Fills in what is fixed for the parent's whole life; at start, before the first connection.</summary>
    public void Start(string action, int maxConnections)
    {
        MetricsData* d = Data;
        d->StartUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        d->MaxConnections = maxConnections;
        Copy(action.Split(' ')[0], new Span<byte>(d->Mode, MetricsData.TextLength));
        Copy(TcpForkMeter.Version, new Span<byte>(d->Version, MetricsData.TextLength));
        d->Magic = MetricsData.Expected;
    }

    private static void Copy(string text, Span<byte> into)
    {
        into.Clear();
        int n = Math.Min(text.Length, into.Length - 1);
        System.Text.Encoding.UTF8.GetBytes(text.AsSpan(0, n), into);
    }

    public void Accepted() => Data->Accepted++;

    public void Denied(Verdict verdict) => Data->Denied[(int)verdict & 7]++;

    public void Started() => Data->Active++;

    public void LaunchFailed() => Data->LaunchFailures++;

    public void ProxyHeaderFailed(ProxyFailure why) => Data->ProxyFailures[(int)why & 7]++;

    public void AcceptFailed() => Data->AcceptFailures++;

    public void BackedOff() => Data->Backoffs++;

    /// <summary>A child the table knew has been reaped: its wait status and how long it lived.</summary>
    public void Ended(int waitStatus, long lifetimeMs)
    {
        MetricsData* d = Data;
        d->Active--;
        int signal = waitStatus & 0x7f;
        if (signal != 0)
        {
            d->Signalled++;
            d->BySignal[signal < MetricsData.Signals ? signal : 0]++;
        }
        else if ((waitStatus & 0xff00) == 0)
        {
            d->ExitZero++;
        }
        else
        {
            d->ExitNonzero++;
        }
        ReadOnlySpan<long> bounds = MetricsData.BucketBounds;
        int bucket = 0;
        while (bucket < bounds.Length && lifetimeMs > bounds[bucket])
        {
            bucket++;
        }
        d->Lifetime[bucket]++;
        d->LifetimeSumMs += lifetimeMs;
    }
}
