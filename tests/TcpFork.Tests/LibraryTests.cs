using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>The C# library as a user's program uses it (tests/TcpFork.TestHost), in fork (NativeAOT) and spawn (JIT) modes.</summary>
public class LibraryTests
{
    public static TheoryData<Flavor> Modes() => new(Flavor.AotFork, Flavor.JitSpawn);

    private static ServerProcess Host(string scenario, Flavor flavor) =>
        ServerProcess.Start(Binaries.TestHost(flavor), [scenario, flavor == Flavor.AotFork ? "fork" : "spawn"]);

    private static async Task<string> Talk(int port, string send = "")
    {
        using Socket s = EchoClient.Connect(port);
        try
        {
            return Encoding.UTF8.GetString(await EchoClient.ExchangeAsync(s, Encoding.UTF8.GetBytes(send)));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return "";
        }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_handler_exception_is_logged_the_child_exits_1_and_the_parent_goes_on(Flavor flavor)
    {
        using ServerProcess server = Host("throw", flavor);
        for (int i = 0; i < 2; i++)
        {
            int from = server.LogCount;
            Assert.Equal("", await Talk(server.Port, "x"));
            string error = server.WaitForLog(@"^tcpfork: error: \d+: handler failed: InvalidOperationException: boom$", from: from);
            string pid = Regex.Match(error, @"error: (\d+)").Groups[1].Value;
            server.WaitForLog($"^tcpfork: end {pid} status 1$", from: from);
        }
        Assert.False(server.HasExited);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task An_async_handler_serves_and_its_result_is_the_exit_code(Flavor flavor)
    {
        using ServerProcess server = Host("async", flavor);
        using Socket s = EchoClient.Connect(server.Port);
        int clientPort = ((System.Net.IPEndPoint)s.LocalEndPoint!).Port;
        string reply = Encoding.UTF8.GetString(await EchoClient.ExchangeAsync(s, "hi\n"u8.ToArray()));
        Assert.Equal($"async hi from 127.0.0.1:{clientPort} to 127.0.0.1:{server.Port} #1\n", reply);
        server.WaitForLog(@"^tcpfork: end \d+ status 3$");
    }

    [Fact]
    public async Task In_fork_mode_children_see_the_parents_state_and_nothing_a_child_does_changes_it()
    {
        using ServerProcess server = Host("state", Flavor.AotFork);
        for (int i = 0; i < 3; i++)
        {
            string[] words = (await Talk(server.Port)).Trim().Split(' ');
            Assert.Equal($"{server.Pid}", words[1]); // made in the parent before fork
            Assert.Equal("100", words[2]);            // each child starts from the parent's 0
            Assert.NotEqual($"{server.Pid}", words[4]);
        }
    }

    [Fact]
    public async Task In_spawn_mode_each_child_runs_Main_again_so_it_makes_its_own_state()
    {
        using ServerProcess server = Host("state", Flavor.JitSpawn);
        string[] words = (await Talk(server.Port)).Trim().Split(' ');
        Assert.Equal(words[4], words[1]); // made by the child itself: set up the same way on every run
        Assert.Equal("100", words[2]);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task The_verify_hook_refuses_in_the_parent_and_the_exit_hook_sees_every_child(Flavor flavor)
    {
        using ServerProcess server = Host("hooks", flavor);
        var seen = new List<int>();
        int denied = 0;
        for (int i = 0; i < 12; i++)
        {
            // Every other client comes from 127.0.0.2, which the test host's Verify hook refuses.
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            bool allowed = i % 2 == 0;
            s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(allowed ? "127.0.0.1" : "127.0.0.2"), 0));
            int from = server.LogCount; // before connecting: the server may log this connection at once
            s.Connect(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port));
            string reply;
            try
            {
                reply = Encoding.UTF8.GetString(await EchoClient.ExchangeAsync(s, ReadOnlyMemory<byte>.Empty));
            }
            catch (SocketException)
            {
                reply = "";
            }
            if (allowed)
            {
                Match m = Regex.Match(reply, @"^exits before me (\d+)\n$");
                Assert.True(m.Success, reply);
                seen.Add(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
                server.WaitForLog(@"^tcpfork: status: 0/1000$", from: from); // reaped, so the hook has run
            }
            else
            {
                Assert.Equal("", reply);
                server.WaitForLog(@" verify$", from: from);
                denied++;
            }
        }
        // Fork: each child sees the parent's count of earlier exits, so the exit hook ran for every one.
        // Spawn: each child runs Main again and starts from 0 — the rule the library documents.
        Assert.Equal(flavor == Flavor.AotFork ? Enumerable.Range(0, seen.Count) : Enumerable.Repeat(0, seen.Count), seen);
        Assert.Equal((6, 6), (seen.Count, denied));
        Assert.DoesNotContain(server.StderrLines, l => l.Contains("hook allocated", StringComparison.Ordinal));
        Assert.Equal(denied, server.StderrLines.Count(l => l.EndsWith(" verify", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_hook_that_allocates_in_the_parent_is_reported_once()
    {
        using ServerProcess server = Host("hooks-allocating", Flavor.AotFork);
        await Talk(server.Port);
        await Talk(server.Port);
        server.WaitForLog(@"^tcpfork: warning: the Verify hook allocated \d+ bytes in the parent; hooks must not allocate");
        Assert.Single(server.StderrLines, l => l.Contains("hook allocated", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Hooks_that_keep_the_rules_leave_the_parent_allocating_0_bytes_per_connection()
    {
        using ServerProcess server = Host("hooks", Flavor.AotFork);
        (long before, _) = Stats(server);
        for (int i = 0; i < 200; i++)
        {
            await Talk(server.Port);
        }
        server.WaitForLogCount("^tcpfork: end ", 200); // every child reaped: the parent's whole path has run
        (long after, _) = Stats(server);
        Assert.Equal(0, after - before);
    }

    private static (long Allocated, int Gcs) Stats(ServerProcess server)
    {
        int from = server.LogCount;
        server.Signal(Native.SIGHUP);
        Match m = Regex.Match(server.WaitForLog(@"^tcpfork: stats: ", from: from), @"allocated (\d+) gc (\d+)");
        return (long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>A client socket bound to a free local port of the given parity (the kernel's own choice is biased: bind(0) favours odd ports, connect even).</summary>
    private static Socket ClientFromPortOfParity(int parity)
    {
        for (int attempt = 0; ; attempt++)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            int port = Random.Shared.Next(10_000, 16_000) * 2 + parity;
            try
            {
                s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
                return s;
            }
            catch (SocketException) when (attempt < 100)
            {
                s.Dispose();
            }
        }
    }

    private static async Task<string> Exchange(Socket s)
    {
        try
        {
            return Encoding.UTF8.GetString(await EchoClient.ExchangeAsync(s, ReadOnlyMemory<byte>.Empty));
        }
        catch (SocketException)
        {
            return "";
        }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_Verify_hook_that_throws_refuses_those_clients_warns_once_and_the_parent_still_drains_to_exit_0(Flavor flavor)
    {
        // The test host's Verify throws InvalidOperationException("even port") for clients from an even port.
        using ServerProcess server = Host("verify-throws", flavor);
        int denied = 0;
        for (int i = 0; i < 16; i++)
        {
            bool even = i % 2 == 0;
            using Socket s = ClientFromPortOfParity(even ? 0 : 1);
            int port = ((System.Net.IPEndPoint)s.LocalEndPoint!).Port;
            int from = server.LogCount;
            s.Connect(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port));
            string reply = await Exchange(s);
            if (even)
            {
                Assert.Equal("", reply);
                server.WaitForLog($@"^tcpfork: deny 0 :127\.0\.0\.1:{server.Port} :127\.0\.0\.1::{port} verify$", from: from);
                denied++;
            }
            else
            {
                Assert.Equal("served\n", reply);
            }
        }
        Assert.Single(server.StderrLines, l => l.Contains("hook threw", StringComparison.Ordinal));
        Assert.Single(server.StderrLines, l => l == "tcpfork: warning: the Verify hook threw InvalidOperationException: even port; connections it throws for are refused");
        Assert.Equal(denied, server.StderrLines.Count(l => l.EndsWith(" verify", StringComparison.Ordinal)));
        Assert.DoesNotContain(server.StderrLines, l => l.Contains("hook allocated", StringComparison.Ordinal));
        Assert.False(server.HasExited);
        server.Signal(Native.SIGTERM);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        Assert.Matches(@"^tcpfork: exit: 16 connections; ", server.StderrLines[^1]);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_ChildExited_hook_that_throws_is_logged_once_per_exception_type_and_the_parent_serves_on(Flavor flavor)
    {
        // The test host's ChildExited throws InvalidOperationException and FormatException in turn.
        using ServerProcess server = Host("exit-throws", flavor);
        for (int i = 0; i < 8; i++)
        {
            int from = server.LogCount;
            Assert.Equal("served\n", await Talk(server.Port));
            server.WaitForLog(@"^tcpfork: status: 0/1000$", from: from); // reaped, so the hook has run
        }
        string[] warnings = server.StderrLines.Where(l => l.Contains("hook threw", StringComparison.Ordinal)).ToArray();
        Assert.Equal(
            [
                "tcpfork: warning: the ChildExited hook threw InvalidOperationException: odd exit; the parent serves on",
                "tcpfork: warning: the ChildExited hook threw FormatException: even exit; the parent serves on", // first line of the message only
            ], warnings);
        Assert.Equal(8, server.StderrLines.Count(l => Regex.IsMatch(l, @"^tcpfork: end \d+ status 0$")));
        server.Signal(Native.SIGTERM);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_memory_limit_caps_the_GC_heap_and_native_memory_and_a_handler_past_it_is_stopped_and_logged(Flavor flavor)
    {
        // The test host sets Limits.AddressSpace = 256 MiB; "managed N" / "native N" allocate N MiB, 1 MiB at a time.
        const long Limit = 256L << 20;
        using ServerProcess server = Host("memory", flavor);
        foreach (string kind in new[] { "managed", "native" })
        {
            string reply = await Talk(server.Port, $"{kind} 50\n");
            Match m = Regex.Match(reply, @"^allocated 50 heap-limit (\d+) as-limit (\d+) vm (\d+)\n$");
            Assert.True(m.Success, reply + server.Stderr);
            long heapLimit = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            long asLimit = long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            long vm = long.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            Assert.Equal(Limit, heapLimit);
            // RLIMIT_AS is the child's own (tens of GB, the runtime's reservations) plus the limit: never more headroom than that.
            Assert.InRange(asLimit - vm, 0, Limit);
            Assert.True(asLimit > 4 * Limit, $"RLIMIT_AS {asLimit} should include the runtime's reservation (vm {vm})");

            int from = server.LogCount;
            Assert.Equal("", await Talk(server.Port, $"{kind} 1024\n"));
            string error = server.WaitForLog($@"^tcpfork: error: \d+: handler exceeded the memory limit \({Limit} bytes\)$", from: from);
            string pid = Regex.Match(error, @"error: (\d+)").Groups[1].Value;
            server.WaitForLog($"^tcpfork: end {pid} status 1$", from: from);
        }
        Assert.StartsWith("allocated 200 ", await Talk(server.Port, "managed 200\n"));
        Assert.DoesNotContain(server.StderrLines, l => l.Contains("handler failed", StringComparison.Ordinal));
        Assert.False(server.HasExited);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task The_key_value_sample_serves_its_table_and_a_SET_stays_in_its_own_process(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.Start(Binaries.KeyValue(flavor), []);
        string first = await Talk(server.Port, "GET colour\nSET colour red\nGET colour\nGET nothing\nKEYS\nbogus\nQUIT\n");
        Assert.Equal("VALUE blue\nOK\nVALUE red\nNOT_FOUND\nKEYS answer colour\nERROR expected GET KEY, SET KEY VALUE, KEYS or QUIT\nBYE\n", first);
        Assert.Equal("VALUE blue\n", await Talk(server.Port, "GET colour\n"));
        server.WaitForLog(flavor == Flavor.AotFork ? " mode fork " : " mode spawn ");
    }
}
