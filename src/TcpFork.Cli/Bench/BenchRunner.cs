using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Spectre.Console;

namespace TcpFork.Cli.Bench;

/// <summary>What to run: one of the three workloads, and its sizes.</summary>
internal sealed record BenchSettings(
    string Target, SockAddr Address, long? Connections, double? Duration, int Concurrency, int Rounds, int Size,
    bool Hold, long? Bulk, bool Json, int TimeoutMs, bool Tls = false, bool TlsResume = false)
{
    public string Workload => Bulk is not null ? "bulk" : Hold ? "hold" : "rate";
}

/// <summary>
/// <c>tcpfork bench</c>: a load generator for echo servers, like redis-benchmark. Every echoed byte is
/// checked; failures are counted by kind; the report gives conn/s, MiB/s and latency percentiles and
/// the command that reproduces it.
/// </summary>
internal static class BenchRunner
{
    public static int Run(BenchSettings s, string reproduce)
    {
        RaiseFileLimit();
        var sw = Stopwatch.StartNew();
        long progress = 0;
        BenchResult result;
        Func<BenchResult> work = s.Workload switch
        {
            "bulk" => () => Bulk(s, ref progress),
            "hold" => () => Hold(s, ref progress),
            _ => () => Rate(s, ref progress),
        };
        result = RunWithProgress(s, work, () => Interlocked.Read(ref progress));
        double seconds = sw.Elapsed.TotalSeconds;
        Report(s, result, seconds, reproduce);
        return result.Failed == 0 ? 0 : 1;
    }

    private static BenchResult RunWithProgress(BenchSettings s, Func<BenchResult> work, Func<long> done)
    {
        if (s.Json || Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            return work();
        }
        BenchResult? result = null;
        double max = s.Workload switch
        {
            "bulk" => s.Bulk!.Value,
            "hold" => s.Concurrency,
            _ => s.Connections ?? 0,
        };
        var started = Stopwatch.StartNew();
        AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                string name = $"{s.Workload} {s.Target}";
                ProgressTask task = ctx.AddTask(name, maxValue: max > 0 ? max : s.Duration!.Value);
                var worker = new Thread(() => result = work());
                worker.Start();
                var rate = new LiveRate(s.Workload);
                while (!worker.Join(100))
                {
                    long count = done();
                    task.Value = max > 0 ? count : Math.Min(started.Elapsed.TotalSeconds, s.Duration!.Value);
                    task.Description = $"{name}  {rate.Describe(count, started.Elapsed.TotalSeconds)}";
                }
                task.Value = task.MaxValue;
            });
        return result!;
    }

    /// <summary>C threads, each running whole connections until the count or the time is used up.</summary>
    private static BenchResult Rate(BenchSettings s, ref long progress)
    {
        var client = new LoadClient(s.Address, s.TimeoutMs);
        long issued = 0;
        long deadline = s.Duration is double d ? Stopwatch.GetTimestamp() + (long)(d * Stopwatch.Frequency) : long.MaxValue;
        long total = s.Connections ?? long.MaxValue;
        var results = new BenchResult[s.Concurrency];
        var threads = new Thread[s.Concurrency];
        long[] progressBox = [0];
        for (int t = 0; t < threads.Length; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                var r = results[id] = new BenchResult();
                byte[] payload = Pattern(s.Size, id);
                byte[] back = new byte[s.Size];
                using TlsHandshakeClient? tls = s.Tls ? new TlsHandshakeClient(s.TlsResume) : null;
                while (Interlocked.Increment(ref issued) <= total && Stopwatch.GetTimestamp() < deadline)
                {
                    if (tls is not null)
                    {
                        tls.EchoConnection(client, payload, back, s.Rounds, r);
                    }
                    else
                    {
                        client.EchoConnection(payload, back, s.Rounds, r);
                    }
                    Interlocked.Increment(ref progressBox[0]);
                }
            }) { IsBackground = true };
        }
        Start(threads, ref progress, progressBox);
        return BenchResult.Merge(results);
    }

    /// <summary>Open C connections, echo once on each, keep them all for the duration, then close and check each.</summary>
    private static BenchResult Hold(BenchSettings s, ref long progress)
    {
        var client = new LoadClient(s.Address, s.TimeoutMs);
        int openers = Math.Min(8, s.Concurrency);
        var results = new BenchResult[openers];
        var fds = new int[s.Concurrency];
        Array.Fill(fds, -1);
        long[] progressBox = [0];
        int next = -1;
        var threads = new Thread[openers];
        for (int t = 0; t < openers; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                var r = results[id] = new BenchResult();
                byte[] payload = Pattern(s.Size, id), back = new byte[s.Size];
                int i;
                while ((i = Interlocked.Increment(ref next)) < fds.Length)
                {
                    long start = Stopwatch.GetTimestamp();
                    int fd = client.Connect(r);
                    if (fd < 0)
                    {
                        continue;
                    }
                    if (LoadClient.Send(fd, payload, r) && LoadClient.Receive(fd, back, r))
                    {
                        if (back.AsSpan().SequenceEqual(payload))
                        {
                            fds[i] = fd;
                            r.LatencyTicks.Add(Stopwatch.GetTimestamp() - start);
                            Interlocked.Increment(ref progressBox[0]);
                            continue;
                        }
                        r.Fail(Failure.Mismatch);
                    }
                    Interop.Close(fd);
                }
            }) { IsBackground = true };
        }
        Start(threads, ref progress, progressBox);
        Thread.Sleep(TimeSpan.FromSeconds(s.Duration ?? 1));
        var closer = new BenchResult();
        foreach (int fd in fds.Where(fd => fd >= 0))
        {
            Interop.Shutdown(fd, Interop.SHUT_WR);
            if (LoadClient.ExpectEof(fd, closer))
            {
                closer.Ok++;
                closer.Bytes += 2L * s.Size;
            }
            Interop.Close(fd);
        }
        BenchResult all = BenchResult.Merge([.. results, closer]);
        return all;
    }

    /// <summary>One connection; a writer streams BYTES while a reader checks every echoed byte as it arrives.</summary>
    private static unsafe BenchResult Bulk(BenchSettings s, ref long progress)
    {
        var client = new LoadClient(s.Address, s.TimeoutMs);
        if (s.Tls)
        {
            long[] box = [0];
            BenchResult result = null!;
            Start([new Thread(() => result = TlsLoadClient.Bulk(client, s.Bulk!.Value, Pattern(TlsChunk + 251, 7), TlsChunk, box)) { IsBackground = true }], ref progress, box);
            return result;
        }
        var w = new BenchResult();
        var r = new BenchResult();
        int fd = client.Connect(w);
        if (fd < 0)
        {
            return w;
        }
        long total = s.Bulk!.Value;
        const int Chunk = 256 * 1024;
        // The writer vmsplices from this memory: it is native (the GC must not move it) and is freed only
        // after the reader has seen every byte, when no socket buffer can refer to its pages any more.
        byte* pattern = (byte*)NativeMemory.AlignedAlloc(Chunk + 251, 4096);
        Pattern(Chunk + 251, 7).CopyTo(new Span<byte>(pattern, Chunk + 251)); // any window of it is the pattern at some offset
        long start = Stopwatch.GetTimestamp();
        long[] progressBox = [0];
        var writer = new Thread(() =>
        {
            if (LoadClient.SendPattern(fd, pattern, 251, Chunk, total, w))
            {
                Interop.Shutdown(fd, Interop.SHUT_WR);
            }
        }) { IsBackground = true };
        var reader = new Thread(() =>
        {
            byte[] buffer = new byte[Chunk];
            var want = new ReadOnlySpan<byte>(pattern, Chunk + 251);
            long got = 0;
            while (got < total)
            {
                int n = (int)Math.Min(Chunk, total - got);
                if (!LoadClient.Receive(fd, buffer.AsSpan(0, n), r))
                {
                    return;
                }
                if (!buffer.AsSpan(0, n).SequenceEqual(want.Slice((int)(got % 251), n)))
                {
                    r.Fail(Failure.Mismatch);
                    return;
                }
                got += n;
                Interlocked.Exchange(ref progressBox[0], got);
            }
            if (LoadClient.ExpectEof(fd, r))
            {
                r.Ok = 1;
                r.Bytes = 2 * total;
                r.LatencyTicks.Add(Stopwatch.GetTimestamp() - start);
            }
        }) { IsBackground = true };
        Start([writer, reader], ref progress, progressBox);
        Interop.Close(fd);
        NativeMemory.AlignedFree(pattern);
        return BenchResult.Merge([w, r]);
    }

    /// <summary>Plaintext per TLS write in the bulk workload: one full record (16 KiB) each.</summary>
    private const int TlsChunk = 16 * 1024;

    private static void Start(Thread[] threads, ref long progress, long[] box)
    {
        foreach (Thread t in threads)
        {
            t.Start();
        }
        foreach (Thread t in threads)
        {
            while (!t.Join(50))
            {
                Interlocked.Exchange(ref progress, Interlocked.Read(ref box[0]));
            }
        }
        Interlocked.Exchange(ref progress, Interlocked.Read(ref box[0]));
    }

    private static byte[] Pattern(int size, int seed)
    {
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++)
        {
            b[i] = (byte)((i + seed) % 251);
        }
        return b;
    }

    /// <summary>Holding 10,000 connections needs 10,000 descriptors: take the hard limit.</summary>
    private static unsafe void RaiseFileLimit()
    {
        Interop.RLimit l;
        if (Interop.GetRLimit(Interop.RLIMIT_NOFILE, &l) == 0 && l.Current < l.Max)
        {
            l.Current = l.Max;
            Interop.SetRLimit(Interop.RLIMIT_NOFILE, &l);
        }
    }

    private static void Report(BenchSettings s, BenchResult r, double seconds, string reproduce)
    {
        double connPerS = r.Ok / seconds;
        double mibPerS = r.Bytes / 2.0 / (1 << 20) / seconds; // bytes echoed, counted once
        string[] kinds = Enum.GetNames<Failure>().Select(n => n.ToLowerInvariant()).ToArray();
        (string Name, double Q)[] quantiles = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)];
        if (s.Json)
        {
            // Each workload's own fields: a bulk run has one connection, so no rate or percentiles of one sample.
            using var stream = new MemoryStream();
            using (var j = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false }))
            {
                j.WriteStartObject();
                j.WriteString("target", s.Target);
                j.WriteString("workload", s.Workload);
                if (s.Tls)
                {
                    j.WriteBoolean("tls", true);
                    j.WriteBoolean("resume", s.TlsResume);
                }
                switch (s.Workload)
                {
                    case "bulk":
                        j.WriteNumber("bytes", s.Bulk!.Value);
                        break;
                    case "hold":
                        j.WriteNumber("concurrency", s.Concurrency);
                        j.WriteNumber("size", s.Size);
                        j.WriteNumber("hold_seconds", s.Duration ?? 1);
                        break;
                    default:
                        if (s.Connections is long n)
                        {
                            j.WriteNumber("connections", n);
                        }
                        else
                        {
                            j.WriteNumber("duration", s.Duration!.Value);
                        }
                        j.WriteNumber("concurrency", s.Concurrency);
                        j.WriteNumber("size", s.Size);
                        j.WriteNumber("rounds", s.Rounds);
                        break;
                }
                j.WriteNumber("ok", r.Ok);
                j.WriteNumber("failed", r.Failed);
                j.WriteStartObject("failures");
                for (int i = 0; i < kinds.Length; i++)
                {
                    j.WriteNumber(kinds[i], r.Failures[i]);
                }
                j.WriteEndObject();
                j.WriteNumber("seconds", Math.Round(seconds, 4));
                if (s.Workload == "rate")
                {
                    j.WriteNumber("conn_per_s", Math.Round(connPerS, 1));
                }
                if (s.Workload != "hold")
                {
                    j.WriteNumber("mib_per_s", Math.Round(mibPerS, 2));
                }
                if (s.Workload != "bulk")
                {
                    j.WriteStartObject("latency_ms");
                    foreach ((string name, double q) in quantiles)
                    {
                        j.WriteNumber(name, Math.Round(r.LatencyMs(q), 3));
                    }
                    j.WriteEndObject();
                }
                j.WriteString("reproduce", reproduce);
                j.WriteEndObject();
            }
            Console.Out.WriteLine(Encoding.UTF8.GetString(stream.ToArray()));
            return;
        }
        var o = Console.Out;
        string what = s.Workload switch
        {
            "bulk" => $"{s.Bulk} bytes through one connection",
            "hold" => $"{s.Concurrency} connections held for {s.Duration ?? 1} s, {s.Size} bytes echoed on each",
            _ => $"{(s.Connections is long n ? $"{n} connections" : $"{s.Duration} s")}, concurrency {s.Concurrency}, {s.Size} bytes x {s.Rounds} round{(s.Rounds > 1 ? "s" : "")}, half-close",
        };
        string tls = !s.Tls ? "" : s.TlsResume ? ", over TLS (resumption allowed: a connection may resume a session from an earlier one)" : ", over TLS (a full handshake each connection)";
        o.WriteLine($"tcpfork bench {s.Target}: {what}{tls}");
        o.WriteLine($"  {r.Ok} ok, {r.Failed} failed ({string.Join(", ", kinds.Select((k, i) => $"{k} {r.Failures[i]}"))})");
        o.WriteLine(s.Workload switch
        {
            "bulk" => $"  {mibPerS:F2} MiB/s   in {seconds:F2} s",
            "hold" => $"  in {seconds:F2} s",
            _ => $"  {connPerS:F1} conn/s   {mibPerS:F2} MiB/s   in {seconds:F2} s",
        });
        if (s.Workload != "bulk")
        {
            string label = s.Workload == "hold" ? "connect and first echo, ms" : "latency ms";
            o.WriteLine($"  {label}: {string.Join("  ", quantiles.Select(x => $"{x.Name} {r.LatencyMs(x.Q):F3}"))}");
        }
        o.WriteLine($"  reproduce: {reproduce}");
    }
}
