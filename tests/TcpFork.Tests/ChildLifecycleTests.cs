using System.Globalization;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>What happens to children: their descriptors and signals, their deaths, the limit, the drain.</summary>
public class ChildLifecycleTests
{
    public static TheoryData<Flavor> Flavors() => new(Enum.GetValues<Flavor>());

    public static TheoryData<Flavor> AotFlavors() => new(Flavor.AotFork, Flavor.AotSpawn);

    /// <summary>The pid of the child serving the connection whose client port is <paramref name="s"/>'s.</summary>
    private static int ChildOf(ServerProcess server, Socket s)
    {
        int clientPort = ((System.Net.IPEndPoint)s.LocalEndPoint!).Port;
        string line = server.WaitForLog($@"^tcpfork: pid \d+ from 127\.0\.0\.1:{clientPort}$");
        return int.Parse(Regex.Match(line, @"pid (\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task A_child_holds_only_0_1_2_and_its_connection_and_blocks_no_signal(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        await AssertTheChildHoldsOnlyItsConnection(server, flavor);
    }

    [Fact]
    public async Task Without_close_range_a_forked_child_still_holds_only_its_connection()
    {
        // close_range fails with ENOSYS (a kernel before 5.9, an old seccomp profile): the child closes what /proc/self/fd lists.
        using ServerProcess server = ServerProcess.Start(Binaries.NoCloseRange, [Binaries.AotBinary, "echo", "-v", "--mode", "fork"]);
        await AssertTheChildHoldsOnlyItsConnection(server, Flavor.AotFork);
    }

    internal static async Task AssertTheChildHoldsOnlyItsConnection(ServerProcess server, Flavor flavor)
    {
        using Socket s = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(s, "x"u8.ToArray());
        int child = ChildOf(server, s);

        Dictionary<int, string> fds = Descriptors(child);
        string connection = $"socket:[{Native.ServerSideInode(server.Port, ((System.Net.IPEndPoint)s.LocalEndPoint!).Port)}]";
        // What the parent holds beyond stdio (a JIT runtime keeps copies of 0-2 higher up, in every process).
        HashSet<string> parents = Descriptors(server.Pid).Where(kv => kv.Key > 2).Select(kv => kv.Value)
            .Except(fds.Where(kv => kv.Key <= 2).Select(kv => kv.Value)).ToHashSet();
        string listing = string.Join(", ", fds.Select(kv => $"{kv.Key}->{kv.Value}"));
        Assert.Contains(connection, fds.Values);
        if (flavor == Flavor.AotFork)
        {
            // Forked: 0, 1, 2, the connection and the echo handler's own splice pipe (two ends of one pipe).
            var above2 = fds.Where(kv => kv.Key > 2).Select(kv => kv.Value).Where(v => v != connection).ToList();
            Assert.True(above2.Count is 0 or 2 && above2.All(v => v.StartsWith("pipe:", StringComparison.Ordinal)) && above2.Distinct().Count() <= 1, listing);
        }
        else
        {
            // Spawned: the connection on 3; the child's own runtime opens files of its own, but nothing the parent holds.
            Assert.Equal(connection, fds[3]);
        }
        // Sockets and pipes carry their inode, so the same text means the same object: none may be the parent's.
        Assert.All(fds.Where(kv => kv.Key > 2 && Regex.IsMatch(kv.Value, @"^(socket|pipe):\[\d+\]$")),
            kv => Assert.False(parents.Contains(kv.Value), $"inherited {kv.Value}: {listing}"));
        Assert.Equal("0000000000000000", Native.StatusField(child, "SigBlk"));
    }

    private static Dictionary<int, string> Descriptors(int pid) => Directory.GetFiles($"/proc/{pid}/fd").ToDictionary(
        f => int.Parse(Path.GetFileName(f), CultureInfo.InvariantCulture), f => new FileInfo(f).LinkTarget ?? "");

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task A_child_killed_with_SIGKILL_is_logged_and_the_server_keeps_serving(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        using (Socket s = EchoClient.Connect(server.Port))
        {
            await EchoClient.RoundTripAsync(s, "before"u8.ToArray());
            int child = ChildOf(server, s);
            Assert.Equal(0, Native.Kill(child, Native.SIGKILL));
            server.WaitForLog($@"^tcpfork: end {child} signal SIGKILL$");
        }
        Assert.Equal("after"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "after"u8.ToArray()));
    }

    [Theory]
    [MemberData(nameof(AotFlavors))]
    public async Task A_client_that_resets_mid_echo_makes_its_child_exit_1(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        int child;
        using (Socket s = EchoClient.Connect(server.Port))
        {
            await EchoClient.RoundTripAsync(s, "x"u8.ToArray());
            child = ChildOf(server, s);
            // Send a lot without reading, so the child is busy writing back, then reset the connection.
            s.Blocking = false;
            try
            {
                s.Send(new byte[4 << 20]); // as much as the buffers take, without waiting
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
            }
            // Echoed bytes arriving mean the child is in its echo loop with more to do.
            Assert.True(s.Poll(TimeSpan.FromSeconds(20), SelectMode.SelectRead), "nothing echoed back");
            Assert.True(s.Available > 0, "EOF instead of the echo");
            s.LingerState = new LingerOption(true, 0); // close sends RST

        }
        server.WaitForLog($@"^tcpfork: end {child} status 1$");
        Assert.Equal("next"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "next"u8.ToArray()));
    }

    [Theory]
    [MemberData(nameof(AotFlavors))]
    public async Task At_max_connections_a_third_client_waits_until_one_closes(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--max-connections", "2");
        using Socket a = EchoClient.Connect(server.Port);
        using Socket b = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(a, "a"u8.ToArray());
        await EchoClient.RoundTripAsync(b, "b"u8.ToArray());
        int childA = ChildOf(server, a);
        server.WaitForLog("^tcpfork: status: 2/2$");

        using Socket c = EchoClient.Connect(server.Port); // completes in the kernel's backlog
        int portC = ((System.Net.IPEndPoint)c.LocalEndPoint!).Port;
        Task<byte[]> third = EchoClient.RoundTripAsync(c, "c"u8.ToArray());
        // Each SIGHUP is answered by a stats line from the parent's loop: after two, the parent has run its
        // loop with c waiting, and by its own count has accepted two connections.
        string stats = "";
        for (int i = 0; i < 2; i++)
        {
            int from = server.LogCount;
            server.Signal(Native.SIGHUP);
            stats = server.WaitForLog("^tcpfork: stats: ", from: from);
        }
        Assert.StartsWith("tcpfork: stats: connections 2 active 2 ", stats, StringComparison.Ordinal);
        Assert.Equal(2, Native.Children(server.Pid).Count);
        Assert.False(third.IsCompleted, "the third client was served while two connections were open");

        Assert.Equal("A"u8.ToArray(), await EchoClient.ExchangeAsync(a, "A"u8.ToArray()));
        Assert.Equal("c"u8.ToArray(), await third.WaitAsync(TimeSpan.FromSeconds(20)));
        // c's child was made only after a's child had ended, and the limit was never passed. (The parent
        // writes its lines at the end of its loop turn, so c's may come after c's echo: wait for it.)
        server.WaitForLog($@"^tcpfork: pid \d+ from 127\.0\.0\.1:{portC}$");
        string[] log = server.StderrLines;
        int endA = Array.FindIndex(log, l => l.StartsWith($"tcpfork: end {childA} ", StringComparison.Ordinal));
        int startC = Array.FindIndex(log, l => Regex.IsMatch(l, $@"^tcpfork: pid \d+ from 127\.0\.0\.1:{portC}$"));
        Assert.True(endA >= 0 && startC > endA, $"end of a's child at line {endA}, c's child at {startC}:\n{server.Stderr}");
        Assert.DoesNotContain(log, l => l.StartsWith("tcpfork: status: 3/", StringComparison.Ordinal));
        Assert.Equal("B"u8.ToArray(), await EchoClient.ExchangeAsync(b, "B"u8.ToArray()));
        Assert.Equal("C"u8.ToArray(), await EchoClient.ExchangeAsync(c, "C"u8.ToArray()));
    }

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task SIGTERM_lets_a_connection_in_flight_finish_then_exits_0_with_no_children(Flavor flavor)
    {
        ServerProcess server = ServerProcess.StartEcho(flavor);
        using (server)
        {
            using Socket s = EchoClient.Connect(server.Port);
            await EchoClient.RoundTripAsync(s, "first"u8.ToArray());
            int child = ChildOf(server, s);
            server.Signal(Native.SIGTERM);
            server.WaitForLog(@"^tcpfork: stop: SIGTERM; draining 1 connections");

            // The listener is closed: a new client is refused…
            Assert.Throws<SocketException>(() => EchoClient.Connect(server.Port).Dispose());
            // …while the one in flight completes its exchange.
            byte[] rest = new byte[100_000];
            Random.Shared.NextBytes(rest);
            Assert.Equal(rest, await EchoClient.ExchangeAsync(s, rest));

            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
            Assert.Contains($"tcpfork: end {child} status 0", server.StderrLines);
            Assert.Contains("tcpfork: exit: 1 connections; 1 drained, 0 terminated, 0 killed", server.StderrLines);
            Assert.False(Native.IsAlive(child));
        }
    }

    [Fact]
    public async Task After_the_drain_timeout_children_are_terminated_and_the_server_exits_0()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--drain-timeout", "0.5");
        using Socket s = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(s, "idle"u8.ToArray());
        int child = ChildOf(server, s);
        server.Signal(Native.SIGINT);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        Assert.Contains($"tcpfork: end {child} signal SIGTERM", server.StderrLines);
        Assert.Contains("tcpfork: exit: 1 connections; 0 drained, 1 terminated, 0 killed", server.StderrLines);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Empty(await EchoClient.ReadToEndAsync(s, cts.Token)); // the client sees the connection end
    }

    [Fact]
    public void SIGINT_drains_even_when_the_server_was_started_with_SIGINT_ignored()
    {
        // A non-interactive shell starts background jobs with SIGINT ignored; an ignored signal never reaches a signalfd.
        using ServerProcess server = ServerProcess.Start("/bin/sh", ["-c", $"trap '' INT; exec {Binaries.AotBinary} echo"]);
        server.Signal(Native.SIGINT);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        Assert.Contains(server.StderrLines, l => l.StartsWith("tcpfork: stop: SIGINT", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task The_verbose_log_shows_each_childs_progress(Flavor flavor)
    {
        // In spawn mode the child gets -v from the parent's settings, not from parsing the command line again.
        using ServerProcess server = ServerProcess.StartEcho(flavor, "-v");
        using Socket s = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(s, new byte[64]);
        int child = ChildOf(server, s);
        server.WaitForLog($@"^tcpfork: {child}: received 64 bytes; echoing$");
    }

    [Fact]
    public async Task Quiet_logs_no_connection_events()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "-q");
        Assert.Equal("q"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "q"u8.ToArray()));
        server.Signal(Native.SIGTERM);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        Assert.Empty(server.StderrLines);
    }
}
