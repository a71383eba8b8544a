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
    public async Task Invariant_3_the_accept_launch_reap_path_allocates_0_bytes_per_connection(Flavor flavor, string command)
    {
        string[] words = command.Split(' ');
        using ServerProcess server = words[0] == "echo" ? ServerProcess.StartEcho(flavor, words[1..])
            : ServerProcess.StartExec(flavor, words[1..], "cat");
        await AssertNoAllocationPerConnection(server, json: command.Contains("--log-format json", StringComparison.Ordinal));
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
    /// TLS on (issue 13): the credentials are loaded before the loop starts and the handshake runs in each
    /// child, so the parent's path is the same: no thread (fork mode), 0 bytes per connection.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Invariants_1_2_and_3_hold_with_tls(Flavor flavor)
    {
        using var files = new TlsFiles();
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs());
        await AssertNoAllocationPerConnection(server, connections: 300, echo: files.EchoOnceAsync, reloads: true);
        if (flavor == Flavor.AotFork)
        {
            Assert.Equal(["tcpfork", ".NET Finalizer"], Native.ThreadNames(server.Pid).Order().Reverse());
        }
    }

    /// <summary>
    /// <paramref name="connections"/> connections (made by <paramref name="echo"/>, plain by default) after 20
    /// to warm up cost the parent 0 bytes; <paramref name="served"/> were served before. With
    /// <paramref name="reloads"/> each SIGHUP that asks for the stats also reloads something (the TLS
    /// certificate), which allocates: what one SIGHUP costs with no connection is measured first, and the
    /// connections may cost nothing beyond it.
    /// </summary>
    private static async Task AssertNoAllocationPerConnection(ServerProcess server, int served = 0, bool json = false, int connections = 1000,
        Func<int, byte[], Task<byte[]>>? echo = null, bool reloads = false)
    {
        echo ??= EchoClient.EchoOnceAsync;
        byte[] data = "x"u8.ToArray();
        for (int i = 0; i < 20; i++)
        {
            await echo(server.Port, data);
        }
        WaitForReaped(server, served + 20, json);
        long sighup = 0;
        if (reloads)
        {
            Stats(server, json);
            (long first, _) = Stats(server, json);
            (long second, _) = Stats(server, json);
            sighup = second - first;
        }
        (long before, int gcBefore) = Stats(server, json);
        for (int i = 0; i < connections; i++)
        {
            Assert.Equal(data, await echo(server.Port, data));
        }
        WaitForReaped(server, served + 20 + connections, json);
        (long after, int gcAfter) = Stats(server, json);
        if (reloads)
        {
            // A reload's warm-up handshake allocates the same give or take a few dozen bytes (measured: 25128 or
            // 25224 in spawn mode); an allocation per connection would be at least one byte for each of them.
            Assert.InRange(after - before - sighup, -connections + 1, connections - 1);
        }
        else
        {
            Assert.Equal(0, after - before);
        }
        if (!reloads)
        {
            // (A reload's own allocations, some 25 KiB a SIGHUP for TLS, may start a gen-0 GC at any of them.)
            Assert.Equal(gcBefore, gcAfter);
        }
    }

    [Fact]
    public async Task Invariant_1_and_2_the_parent_runs_no_managed_threads_but_the_runtimes_own_and_every_thread_blocks_its_signals()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork);
        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => EchoClient.EchoOnceAsync(server.Port, new byte[100])));
        List<string> names = Native.ThreadNames(server.Pid);
        Assert.Equal(["tcpfork", ".NET Finalizer"], names.Order().Reverse());
        const ulong handled = (1UL << 16) | (1UL << 14) | (1UL << 1) | (1UL << 0); // CHLD TERM INT HUP
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
