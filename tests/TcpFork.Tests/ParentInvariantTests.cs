using System.Globalization;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>The fork-mode parent's invariants from docs/fork-safety.md, each held by a test.</summary>
public class ParentInvariantTests
{
    private static (long Allocated, int Gcs) Stats(ServerProcess server, bool json = false)
    {
        int from = server.LogCount;
        server.Signal(Native.SIGHUP);
        string line = server.WaitForLog(json ? "^\\{.*\"event\":\"stats\"" : "^tcpfork: stats: ", from: from);
        Match m = Regex.Match(line, json ? "\"allocated\":(\\d+),\"gc\":(\\d+)" : @"allocated (\d+) gc (\d+)");
        return (long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>Every launcher: fork, spawn in the child role, a program spawned directly, a program through the child role.</summary>
    [Theory]
    [InlineData(Flavor.AotFork, "echo")]
    [InlineData(Flavor.AotSpawn, "echo")]
    [InlineData(Flavor.AotFork, "exec")]
    [InlineData(Flavor.AotSpawn, "exec --limit-nofile 64")]
    [InlineData(Flavor.AotFork, "echo --log-format json")]
    [InlineData(Flavor.AotFork, "echo --metrics 127.0.0.1:0")]
    [InlineData(Flavor.AotSpawn, "echo --metrics 127.0.0.1:0")]
    [InlineData(Flavor.AotFork, "exec --metrics 127.0.0.1:0")]
    [InlineData(Flavor.AotFork, "echo --upgrade")]
    public async Task Invariant_3_the_accept_launch_reap_path_allocates_0_bytes_per_connection(Flavor flavor, string command)
    {
        string[] words = command.Split(' ');
        using ServerProcess server = words[0] == "echo" ? ServerProcess.StartEcho(flavor, words[1..])
            : ServerProcess.StartExec(flavor, words[1..], "cat");
        bool metrics = command.Contains("--metrics", StringComparison.Ordinal);
        await AssertNoAllocationPerConnection(server, json: command.Contains("--log-format json", StringComparison.Ordinal),
            metricsPort: metrics ? MetricsTests.MetricsPort(server) : null);
        if (metrics && flavor == Flavor.AotFork && words[0] == "echo")
        {
            // Invariants 1 and 2 with scrapes served: still no thread but the runtime's own.
            Assert.Equal(["tcpfork", ".NET Finalizer"], Native.ThreadNames(server.Pid).Order().Reverse());
        }
    }

    /// <summary>
    /// The same with systemd's features on: the listener passed by systemd-socket-activate, and sd_notify
    /// (STATUS= as connections come and go, WATCHDOG=1 every 100 ms) to a test socket. In fork mode, also
    /// invariants 1 and 2: no thread but the runtime's own.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Invariant_3_holds_under_socket_activation_and_sd_notify(Flavor flavor)
    {
        int port = SystemdTests.FreePort();
        using var notify = new SystemdTests.NotifySocket();
        (string exe, string[] mode) = Binaries.For(flavor);
        using ServerProcess server = SystemdTests.ActivatedTcp(port, [exe, "echo", .. mode, "-v"], out System.Net.Sockets.Socket first,
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Address, ["WATCHDOG_USEC"] = "200000" });
        using (first)
        {
            await EchoClient.RoundTripAsync(first, "x"u8.ToArray());
        }
        Assert.StartsWith("READY=1\n", notify.Receive());
        await AssertNoAllocationPerConnection(server, served: 1);
        if (flavor == Flavor.AotFork)
        {
            Assert.Equal(["tcpfork", ".NET Finalizer"], Native.ThreadNames(server.Pid).Order().Reverse());
        }
    }

    /// <summary>
    /// With --proxy-protocol on: each client sends a v1 header (from a different source address each
    /// time, so the per-IP table sees many clients), half of it first and the rest once the server's
    /// kernel has it, so the parent parks every connection in its waiting ring before it reads the header
    /// whole. In fork mode, also invariants 1 and 2: no thread but the runtime's own.
    /// </summary>
    /// With <paramref name="more"/>: every operations option at once (metrics with scrapes, JSON logs).
    [Theory]
    [InlineData(Flavor.AotFork, "echo", "")]
    [InlineData(Flavor.AotSpawn, "echo", "")]
    [InlineData(Flavor.AotFork, "exec", "")]
    [InlineData(Flavor.AotFork, "echo", "--metrics 127.0.0.1:0 --log-format json")]
    [InlineData(Flavor.AotSpawn, "echo", "--metrics 127.0.0.1:0 --log-format json")]
    [InlineData(Flavor.AotFork, "echo", "--metrics 127.0.0.1:0 --log-format json --upgrade")]
    public async Task Invariant_3_holds_with_the_PROXY_protocol(Flavor flavor, string command, string more)
    {
        string[] proxy = ["--proxy-protocol", "v1", "--proxy-from", "127.0.0.1", .. more.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        using ServerProcess server = command == "echo" ? ServerProcess.StartEcho(flavor, proxy) : ServerProcess.StartExec(flavor, proxy, "cat");
        bool metrics = more.Contains("--metrics", StringComparison.Ordinal);
        int n = 0;
        await AssertNoAllocationPerConnection(server, json: more.Contains("json", StringComparison.Ordinal), metricsPort: metrics ? MetricsTests.MetricsPort(server) : null,
            exchange: async (port, data) =>
        {
            n++;
            byte[] header = ProxyProtocolTests.V1(string.Create(CultureInfo.InvariantCulture, $"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"), "192.0.2.2", 1000 + (n % 50000), 80);
            using System.Net.Sockets.Socket s = EchoClient.Connect(port);
            s.NoDelay = true;
            await s.SendAsync(header.AsMemory(0, header.Length / 2));
            ProxyProtocolTests.WaitUntilAcknowledged(s);
            await s.SendAsync(header.AsMemory(header.Length / 2));
            return await EchoClient.ExchangeAsync(s, data);
        });
        Assert.DoesNotContain(server.StderrLines, l => l.Contains("warning", StringComparison.Ordinal));
        if (flavor == Flavor.AotFork)
        {
            Assert.Equal(["tcpfork", ".NET Finalizer"], Native.ThreadNames(server.Pid).Order().Reverse());
        }
    }

    /// <summary>
    /// TLS on (issue 13): the credentials are loaded before the loop starts and the handshake runs in each
    /// child, so the parent's path is the same: no thread (fork mode), 0 bytes per connection, no GC. The
    /// SIGHUPs that ask for the stats re-read no TLS file, none having changed (a stat each, no allocation).
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Invariants_1_2_and_3_hold_with_tls(Flavor flavor)
    {
        using var files = new TlsFiles();
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs());
        await AssertNoAllocationPerConnection(server, connections: 300, exchange: files.EchoOnceAsync);
        if (flavor == Flavor.AotFork)
        {
            Assert.Equal(["tcpfork", ".NET Finalizer"], Native.ThreadNames(server.Pid).Order().Reverse());
        }
    }

    /// <summary>
    /// The refusal path with --proxy-protocol: 1000 bad headers, alternating two reasons so the repeated-warnings
    /// counter ends and starts runs (the first of each written, the rest counted), cost the parent 0 bytes.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Invariant_3_holds_for_bad_PROXY_headers_and_their_counted_warnings(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v1", "--proxy-timeout", "60");
        async Task Refused(int i)
        {
            using System.Net.Sockets.Socket s = EchoClient.Connect(server.Port);
            await s.SendAsync(i % 10 == 0 ? "PROXY TCP9 x\r\n"u8.ToArray() : "GET / HTTP/1.0\r\n\r\n"u8.ToArray());
            Assert.Empty(await EchoClient.DrainAsync(s));
        }
        for (int i = 0; i < 20; i++)
        {
            await Refused(i);
        }
        (long before, int gcBefore) = Stats(server);
        for (int i = 0; i < 1000; i++)
        {
            await Refused(i);
            if (i % 100 == 5)
            {
                // A longer run of the same cause (plaintext), so that its count is written with a fraction
                // ("in the last 0.1 s"), which runs of 9 quick ones may not have: time spent refusing, not waiting.
                var run = System.Diagnostics.Stopwatch.StartNew();
                for (int more = 0; more < 500 && run.ElapsedMilliseconds < 120; more++)
                {
                    await Refused(1);
                }
            }
        }
        (long after, int gcAfter) = Stats(server);
        Assert.Equal(0, after - before);
        Assert.Equal(gcBefore, gcAfter);
        Assert.Contains(server.StderrLines, l => l.Contains("; repeated ", StringComparison.Ordinal) && l.EndsWith("; the cause changed", StringComparison.Ordinal));
        Assert.Contains(server.StderrLines, l => Regex.IsMatch(l, @"; repeated \d+ times in the last \d+\.\d s"));
    }

    /// <summary>
    /// <paramref name="connections"/> connections (made by <paramref name="exchange"/>, one plain echo by
    /// default) after 20 to warm up cost the parent 0 bytes; <paramref name="served"/> were served before.
    /// With <paramref name="metricsPort"/>, a scrape every 100 connections (each handed to a child), whose
    /// count must be exact.
    /// </summary>
    private static async Task AssertNoAllocationPerConnection(ServerProcess server, int served = 0, bool json = false, int? metricsPort = null,
        int connections = 1000, Func<int, byte[], Task<byte[]>>? exchange = null)
    {
        exchange ??= EchoClient.EchoOnceAsync;
        byte[] data = "x"u8.ToArray();
        for (int i = 0; i < 20; i++)
        {
            await exchange(server.Port, data);
        }
        WaitForReaped(server, served + 20, json);
        (long before, int gcBefore) = Stats(server, json);
        for (int i = 0; i < connections; i++)
        {
            Assert.Equal(data, await exchange(server.Port, data));
            if (metricsPort is int port && i % 100 == 50)
            {
                Assert.Equal(served + 20 + i + 1, MetricsTests.Value(await MetricsTests.ScrapeAsync(port), "tcpfork_connections_total"));
            }
        }
        WaitForReaped(server, served + 20 + connections, json);
        (long after, int gcAfter) = Stats(server, json);
        Assert.Equal(0, after - before);
        Assert.Equal(gcBefore, gcAfter);
    }

    [Fact]
    public async Task Invariant_1_and_2_the_parent_runs_no_managed_threads_but_the_runtimes_own_and_every_thread_blocks_its_signals()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork);
        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => EchoClient.EchoOnceAsync(server.Port, new byte[100])));
        List<string> names = Native.ThreadNames(server.Pid);
        Assert.Equal(["tcpfork", ".NET Finalizer"], names.Order().Reverse());
        const ulong handled = (1UL << 16) | (1UL << 14) | (1UL << 11) | (1UL << 1) | (1UL << 0); // CHLD TERM USR2 INT HUP
        foreach (string task in Directory.GetDirectories($"/proc/{server.Pid}/task"))
        {
            ulong blocked = ulong.Parse(Native.StatusField(server.Pid, "SigBlk", int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture)), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            Assert.Equal(handled, blocked & handled);
        }
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Invariant_9_the_image_data_is_a_memfd_mapping_that_fork_does_not_copy(bool asNobody)
    {
        // A parent that has switched users can no longer open its own pagemap: the mapping is set up before.
        Skip.If(asNobody && Environment.UserName != "root", "--user needs root to switch users");
        using ServerProcess server = asNobody ? ServerProcess.StartEcho(Flavor.AotFork, "--user", "nobody") : ServerProcess.StartEcho(Flavor.AotFork);
        byte[] data = "image"u8.ToArray();
        for (int i = 0; i < 130; i++)
        {
            Assert.Equal(data, await EchoClient.EchoOnceAsync(server.Port, data));
        }
        WaitForReaped(server, 130);

        // The parent's code paths have all run by connection 128, the last check: the mapping must be clean,
        // or fork() copies its page-table entries again.
        (bool found, long anonymousKiB, long rssKiB) = (false, 0, 0);
        bool inMapping = false;
        foreach (string line in File.ReadLines($"/proc/{server.Pid}/smaps"))
        {
            if (Regex.IsMatch(line, @"^[0-9a-f]+-[0-9a-f]+ "))
            {
                inMapping = line.Contains("/memfd:tcpfork-image-data", StringComparison.Ordinal) && line.Contains(" rw-p ", StringComparison.Ordinal);
                found |= inMapping;
            }
            else if (inMapping && line.StartsWith("Anonymous:", StringComparison.Ordinal))
            {
                anonymousKiB += long.Parse(Regex.Match(line, @"\d+").Value, CultureInfo.InvariantCulture);
            }
            else if (inMapping && line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                rssKiB += long.Parse(Regex.Match(line, @"\d+").Value, CultureInfo.InvariantCulture);
            }
        }
        Assert.True(found, "the executable's data segment is not a memfd mapping");
        Assert.True(rssKiB > 0, "the parent reads its type data from the mapping");
        Assert.Equal(0, anonymousKiB);
    }

    /// <summary>Waits until the parent has reaped <paramref name="children"/> children in all (it logs "end P" after waitpid).</summary>
    private static void WaitForReaped(ServerProcess server, int children, bool json = false)
    {
        server.WaitForLogCount(json ? "^\\{.*\"event\":\"end\"" : "^tcpfork: end ", children);
        Assert.Empty(Native.Children(server.Pid));
    }
}
