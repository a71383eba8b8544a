using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// The counters, in one fixed layout of longs that the parent writes and scrape children (another
/// process: forked, or spawned with the block's memfd) and <see cref="TcpForkMeter"/>'s callbacks read.
/// Only the parent writes, with plain 8-byte aligned stores: a reader sees each value whole, perhaps a
/// connection behind. The text fields are written once, before the first connection.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MetricsData
{
    /// <summary>What <see cref="Magic"/> holds once the parent has filled in the block ("tcpfmet2": this layout).</summary>
    public const long Expected = 0x327465_6d66_7063_74;

    /// <summary>The upper bounds of <see cref="Lifetime"/>'s buckets, in milliseconds; the last bucket is +Inf.</summary>
    public static ReadOnlySpan<long> BucketBounds => [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 1_800_000, 3_600_000];

    public const int Buckets = 17;
    public const int Signals = 65;
    public const int TextLength = 64;

    public long Magic;
    public long StartUnixMs;
    public long MaxConnections;
    public long Accepted;
    public long Active;
    public long AcceptFailures;
    public long Backoffs;
    public long LaunchFailures;
    public long ExitZero;
    public long ExitNonzero;
    public long Signalled;
    public long LifetimeSumMs;

    /// <summary>Refusals, indexed by <see cref="Verdict"/> (0, Allow, unused).</summary>
    public fixed long Denied[8];

    /// <summary>Children ended by each signal, indexed by its number.</summary>
    public fixed long BySignal[Signals];

    /// <summary>Children's lifetimes, one count per bucket (not cumulative; the renderer sums them).</summary>
    public fixed long Lifetime[Buckets];

    /// <summary>Connections closed for their PROXY header, indexed by <see cref="ProxyFailure"/>.</summary>
    public fixed long ProxyFailures[8];

    /// <summary>The launcher's action word (<c>fork</c>, <c>spawn</c>, <c>exec</c>), NUL-padded UTF-8.</summary>
    public fixed byte Mode[TextLength];

    /// <summary>The library's version, NUL-padded UTF-8.</summary>
    public fixed byte Version[TextLength];
}
