using System.Buffers.Text;

namespace TcpFork;

/// <summary>
/// The block as Prometheus' text exposition format (version 0.0.4): each metric with its # HELP and
/// # TYPE lines. Writes into a caller's buffer, allocation-free; a snapshot read while the parent goes on
/// counting (each value whole; a histogram's count is the sum of its buckets as read, so it agrees with them).
/// </summary>
internal static unsafe class MetricsText
{
    /// <summary>More than the text takes with every signal present (about 6 KiB).</summary>
    public const int Capacity = 16 * 1024;

    /// <summary>The signals always listed under tcpfork_children_signaled_total, even at 0; others appear once seen.</summary>
    private static ReadOnlySpan<byte> CommonSignals => [Interop.SIGHUP, Interop.SIGINT, Interop.SIGQUIT, 6, Interop.SIGKILL, 11, Interop.SIGPIPE, Interop.SIGTERM];

    /// <summary>Writes the text of <paramref name="d"/> into <paramref name="into"/>; returns its length.</summary>
    public static int Render(MetricsData* d, byte* into, int capacity)
    {
        var w = new Writer(into, capacity);
        Metric(ref w, "tcpfork_build_info"u8, "gauge"u8, "The tcpfork library's version and how children are made (fork, spawn, exec); always 1."u8);
        w.Put("tcpfork_build_info{version=\""u8).Put(Text(d->Version)).Put("\",mode=\""u8).Put(Text(d->Mode)).Put("\"} 1\n"u8);
        Metric(ref w, "tcpfork_start_time_seconds"u8, "gauge"u8, "When the parent started, in seconds since the Unix epoch."u8);
        w.Put("tcpfork_start_time_seconds "u8).Seconds(d->StartUnixMs).Line();
        Gauge(ref w, "tcpfork_max_connections"u8, "Most connections served at once (--max-connections)."u8, d->MaxConnections);
        Counter(ref w, "tcpfork_connections_total"u8, "Connections accepted, those refused afterwards included."u8, d->Accepted);
        Metric(ref w, "tcpfork_connections_denied_total"u8, "counter"u8, "Connections refused before a child was made, by reason."u8);
        Labelled(ref w, "tcpfork_connections_denied_total{reason=\"rule\"} "u8, d->Denied[(int)Verdict.DenyRule]);
        Labelled(ref w, "tcpfork_connections_denied_total{reason=\"max-per-ip\"} "u8, d->Denied[(int)Verdict.DenyPerIp]);
        Labelled(ref w, "tcpfork_connections_denied_total{reason=\"rate\"} "u8, d->Denied[(int)Verdict.DenyRate]);
        Labelled(ref w, "tcpfork_connections_denied_total{reason=\"verify\"} "u8, d->Denied[(int)Verdict.DenyVerify]);
        Labelled(ref w, "tcpfork_connections_denied_total{reason=\"table-full\"} "u8, d->Denied[(int)Verdict.DenyTableFull]);
        Metric(ref w, "tcpfork_proxy_header_failures_total"u8, "counter"u8, "Connections closed for their PROXY header (--proxy-protocol), by reason."u8);
        Labelled(ref w, "tcpfork_proxy_header_failures_total{reason=\"invalid\"} "u8, d->ProxyFailures[(int)ProxyFailure.Invalid]);
        Labelled(ref w, "tcpfork_proxy_header_failures_total{reason=\"timeout\"} "u8, d->ProxyFailures[(int)ProxyFailure.Timeout]);
        Labelled(ref w, "tcpfork_proxy_header_failures_total{reason=\"eof\"} "u8, d->ProxyFailures[(int)ProxyFailure.Eof]);
        Labelled(ref w, "tcpfork_proxy_header_failures_total{reason=\"untrusted\"} "u8, d->ProxyFailures[(int)ProxyFailure.Untrusted]);
        Labelled(ref w, "tcpfork_proxy_header_failures_total{reason=\"stopping\"} "u8, d->ProxyFailures[(int)ProxyFailure.Stopping]);
        Labelled(ref w, "tcpfork_proxy_header_failures_total{reason=\"error\"} "u8, d->ProxyFailures[(int)ProxyFailure.Error]);
        Gauge(ref w, "tcpfork_connections_active"u8, "Children serving a connection now."u8, d->Active);
        Metric(ref w, "tcpfork_children_ended_total"u8, "counter"u8, "Children reaped, by how they ended: exit status 0, another exit status, or a signal."u8);
        Labelled(ref w, "tcpfork_children_ended_total{class=\"exit0\"} "u8, d->ExitZero);
        Labelled(ref w, "tcpfork_children_ended_total{class=\"exit_nonzero\"} "u8, d->ExitNonzero);
        Labelled(ref w, "tcpfork_children_ended_total{class=\"signal\"} "u8, d->Signalled);
        Signals(ref w, d);
        Metric(ref w, "tcpfork_launch_failures_total"u8, "counter"u8, "Connections closed because no child could be made."u8);
        w.Put("tcpfork_launch_failures_total{action=\""u8).Put(Text(d->Mode)).Put("\"} "u8).Number(d->LaunchFailures).Line();
        Counter(ref w, "tcpfork_accept_failures_total"u8, "accept(2) failures (EAGAIN aside)."u8, d->AcceptFailures);
        Counter(ref w, "tcpfork_backoffs_total"u8, "Pauses in accepting after a resource error (EMFILE, a failed fork...)."u8, d->Backoffs);
        Lifetimes(ref w, d);
        return w.Length;
    }

    private static void Signals(ref Writer w, MetricsData* d)
    {
        Metric(ref w, "tcpfork_children_signaled_total"u8, "counter"u8, "Children ended by a signal, by signal."u8);
        Span<byte> name = stackalloc byte[32];
        for (int s = 1; s < MetricsData.Signals; s++)
        {
            if (d->BySignal[s] != 0 || CommonSignals.Contains((byte)s))
            {
                w.Put("tcpfork_children_signaled_total{signal=\""u8).Put(name[..Interop.SignalName(s, name)]).Put("\"} "u8).Number(d->BySignal[s]).Line();
            }
        }
    }

    private static void Lifetimes(ref Writer w, MetricsData* d)
    {
        Metric(ref w, "tcpfork_child_lifetime_seconds"u8, "histogram"u8, "How long children lived, from launch to reaping."u8);
        ReadOnlySpan<long> bounds = MetricsData.BucketBounds;
        long cumulative = 0;
        for (int b = 0; b < MetricsData.Buckets; b++)
        {
            cumulative += d->Lifetime[b];
            w.Put("tcpfork_child_lifetime_seconds_bucket{le=\""u8);
            if (b < bounds.Length)
            {
                w.Seconds(bounds[b]);
            }
            else
            {
                w.Put("+Inf"u8);
            }
            w.Put("\"} "u8).Number(cumulative).Line();
        }
        w.Put("tcpfork_child_lifetime_seconds_sum "u8).Seconds(d->LifetimeSumMs).Line();
        w.Put("tcpfork_child_lifetime_seconds_count "u8).Number(cumulative).Line();
    }

    private static void Metric(ref Writer w, ReadOnlySpan<byte> name, ReadOnlySpan<byte> type, ReadOnlySpan<byte> help) =>
        w.Put("# HELP "u8).Put(name).Put(" "u8).Put(help).Put("\n# TYPE "u8).Put(name).Put(" "u8).Put(type).Line();

    private static void Counter(ref Writer w, ReadOnlySpan<byte> name, ReadOnlySpan<byte> help, long value)
    {
        Metric(ref w, name, "counter"u8, help);
        w.Put(name).Put(" "u8).Number(value).Line();
    }

    private static void Gauge(ref Writer w, ReadOnlySpan<byte> name, ReadOnlySpan<byte> help, long value)
    {
        Metric(ref w, name, "gauge"u8, help);
        w.Put(name).Put(" "u8).Number(value).Line();
    }

    private static void Labelled(ref Writer w, ReadOnlySpan<byte> nameAndLabels, long value) => w.Put(nameAndLabels).Number(value).Line();

    /// <summary>A NUL-padded text field up to its first NUL; label-safe (the parent wrote it from a version and an action word).</summary>
    private static ReadOnlySpan<byte> Text(byte* field)
    {
        var all = new ReadOnlySpan<byte>(field, MetricsData.TextLength);
        int end = all.IndexOf((byte)0);
        return end < 0 ? all : all[..end];
    }

    /// <summary>Appends to a fixed buffer; past its end, drops the rest (the buffer is sized so it never is).</summary>
    private struct Writer(byte* buffer, int capacity)
    {
        public readonly byte* Buffer = buffer;
        public readonly int Capacity = capacity;
        public int Length;

        public readonly Span<byte> Free => new(Buffer + Length, Capacity - Length);
    }

    private static ref Writer Put(this ref Writer w, ReadOnlySpan<byte> bytes)
    {
        if (bytes.TryCopyTo(w.Free))
        {
            w.Length += bytes.Length;
        }
        return ref w;
    }

    private static ref Writer Number(this ref Writer w, long value)
    {
        if (Utf8Formatter.TryFormat(value, w.Free, out int n))
        {
            w.Length += n;
        }
        return ref w;
    }

    /// <summary>Milliseconds as seconds with up to 3 decimals: 1500 → 1.5, 5 → 0.005.</summary>
    private static ref Writer Seconds(this ref Writer w, long ms)
    {
        w.Number(ms / 1000);
        long rest = ms % 1000;
        if (rest != 0)
        {
            Span<byte> digits = stackalloc byte[4];
            digits[0] = (byte)'.';
            digits[1] = (byte)('0' + (rest / 100));
            digits[2] = (byte)('0' + (rest / 10 % 10));
            digits[3] = (byte)('0' + (rest % 10));
            int n = digits[3] != '0' ? 4 : digits[2] != '0' ? 3 : 2;
            w.Put(digits[..n]);
        }
        return ref w;
    }

    private static void Line(this ref Writer w) => w.Put("\n"u8);
}
