using System.Diagnostics;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>
/// Faults from issue 10 that once crashed, hung or misled the parent: bad command-line values, rules
/// files that are not files, a restart's socket file removed by the old instance, late signals at exit.
/// </summary>
public partial class HardeningTests
{
    [GeneratedRegex(@"\b[A-Z][A-Za-z]+_[A-Z][A-Za-z]+\b")]
    private static partial Regex ResourceKey();

    public static TheoryData<string[], string> BadValues()
    {
        string fifo = Path.Combine(Path.GetTempPath(), $"tcpfork-fifo-{Environment.ProcessId}");
        if (!File.Exists(fifo))
        {
            Assert.Equal(0, TcpFork.Tests.Run.Command("mkfifo", fifo).Code);
        }
        string zero = Path.Combine(Path.GetTempPath(), $"tcpfork-zero-{Environment.ProcessId}");
        File.Delete(zero);
        File.CreateSymbolicLink(zero, "/dev/zero");
        string longLine = Path.Combine(Path.GetTempPath(), $"tcpfork-long-{Environment.ProcessId}");
        File.WriteAllText(longLine, "deny " + new string('x', 10_000) + "\n");
        string escapes = Path.Combine(Path.GetTempPath(), $"tcpfork-esc-{Environment.ProcessId}");
        File.WriteAllText(escapes, "allow 127.0.0.1\ndeny 10.0.0.\u001b[31mred\n");
        return new()
        {
            { ["echo", "--rules", ""], "--rules needs a file name" },
            { ["exec", "--", ""], "the program to run (after --) is an empty name" },
            { ["echo", "--listen", new string('a', 300) + ":80"], "is not a valid host name" },
            { ["echo", "--idle-timeout", "1e-9"], "--idle-timeout must be a number of seconds from 0.001" },
            { ["echo", "--max-lifetime", "0.00000001"], "--max-lifetime must be a number of seconds from 0.001" },
            { ["echo", "--rules", "/nonexistent/rules"], "/nonexistent/rules: No such file or directory" },
            { ["echo", "--rules", fifo], ": not a regular file" },
            { ["echo", "--rules", zero], ": not a regular file" },
            { ["echo", "--rules", longLine], ":1: longer than 1024 characters" },
            { ["echo", "--rules", escapes], ":2: " },
        };
    }

    [Theory]
    [MemberData(nameof(BadValues))]
    public void A_bad_value_exits_2_with_one_short_printable_line(string[] args, string reason)
    {
        string tcpfork = Binaries.AotBinary; // published once per run: not part of the time below
        var clock = Stopwatch.StartNew();
        (int code, string stdout, string stderr) = TcpFork.Tests.Run.Command(tcpfork, args);
        Assert.True(code == 2, stderr);
        Assert.Equal("", stdout);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith("tcpfork: usage: ", line, StringComparison.Ordinal);
        Assert.Contains(reason, line, StringComparison.Ordinal);
        Assert.True(line.Length < 400, line);
        Assert.DoesNotContain(line, char.IsControl);
        Assert.False(ResourceKey().IsMatch(line), line);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "a FIFO must not block the start");
    }

    [Theory]
    [InlineData("fifo")]
    [InlineData("dev-zero")]
    [InlineData("long-line")]
    public async Task A_rules_file_swapped_for_a_non_file_on_SIGHUP_keeps_the_rules_and_the_parent_serving(string swap)
    {
        string dir = Directory.CreateTempSubdirectory("tcpfork-rules").FullName;
        try
        {
            string rules = Path.Combine(dir, "rules");
            await File.WriteAllTextAsync(rules, "deny 127.0.0.2\n");
            using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--rules", rules);
            File.Delete(rules);
            switch (swap)
            {
                case "fifo":
                    Assert.Equal(0, TcpFork.Tests.Run.Command("mkfifo", rules).Code); // no writer: open() would block
                    break;
                case "dev-zero":
                    File.CreateSymbolicLink(rules, "/dev/zero");                      // reading it would never end
                    break;
                default:
                    await File.WriteAllTextAsync(rules, new string('#', 1) + "\n" + new string('z', 5_000_000) + "\u001b\n");
                    break;
            }
            int from = server.LogCount;
            server.Signal(Native.SIGHUP);
            string warning = server.WaitForLog(@"^tcpfork: warning: rules: .*; keeping the rules in force$", from: from);
            Assert.True(warning.Length < 400, warning);
            Assert.DoesNotContain(warning, char.IsControl);
            server.WaitForLog(@"^tcpfork: stats: ", from: from); // the signal was handled to its end: the parent is not stuck
            using Socket s = EchoClient.Connect(server.Port);
            Assert.Equal("still served"u8.ToArray(), await EchoClient.ExchangeAsync(s, "still served"u8.ToArray()));
            Assert.False(server.HasExited);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.JitSpawn)]
    public async Task A_draining_instance_does_not_remove_its_successors_unix_socket(Flavor flavor)
    {
        string dir = Directory.CreateTempSubdirectory("tcpfork-unix").FullName;
        string path = Path.Combine(dir, "s");
        try
        {
            using ServerProcess old = ServerProcess.StartUnixEcho(flavor, path);
            using Socket held = EchoClient.ConnectUnix(path);
            await EchoClient.RoundTripAsync(held, "x"u8.ToArray());
            old.WaitForLog(@"^tcpfork: status: 1/");
            old.Signal(Native.SIGTERM);
            old.WaitForLog(@"^tcpfork: stop: SIGTERM; draining 1 connections");
            using ServerProcess successor = ServerProcess.StartUnixEcho(flavor, path);
            held.Shutdown(SocketShutdown.Send); // the old instance's last child ends: it drains and exits
            Assert.Equal(0, old.WaitForExit(TimeSpan.FromSeconds(20)));
            Assert.True(File.Exists(path), "the successor's socket file was removed by the old instance");
            using Socket fresh = EchoClient.ConnectUnix(path);
            Assert.Equal("new"u8.ToArray(), await EchoClient.ExchangeAsync(fresh, "new"u8.ToArray()));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Signals_still_arriving_while_it_exits_do_not_change_the_exit_status()
    {
        for (int run = 0; run < 3; run++)
        {
            using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork);
            server.Signal(Native.SIGTERM);
            // HUPs until it has exited: some arrive after the loop's last read, as they would from a busy supervisor.
            var clock = Stopwatch.StartNew();
            while (!server.HasExited && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                Native.Kill(server.Pid, Native.SIGHUP);
            }
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public void SIGTERM_under_load_serves_what_the_kernel_accepted_and_resets_none(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "-q");
        int served = 0, resets = 0, refused = 0;
        using var started = new CountdownEvent(64);
        var clients = Enumerable.Range(0, 64).Select(_ => new Thread(() =>
        {
            started.Signal();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                try
                {
                    using Socket s = EchoClient.Connect(server.Port);
                    s.ReceiveTimeout = 20_000;
                    s.Send("ping"u8);
                    s.Shutdown(SocketShutdown.Send);
                    byte[] buffer = new byte[16];
                    int got = 0, n;
                    while ((n = s.Receive(buffer, got, buffer.Length - got, SocketFlags.None)) > 0)
                    {
                        got += n;
                    }
                    Assert.Equal("ping", System.Text.Encoding.ASCII.GetString(buffer, 0, got));
                    Interlocked.Increment(ref served);
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
                {
                    Interlocked.Increment(ref refused); // after the listeners closed: refused before any accept, as it should be
                    return;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
                {
                    Interlocked.Increment(ref resets);
                }
            }
        }) { IsBackground = true }).ToList();
        clients.ForEach(t => t.Start());
        Assert.True(started.Wait(TimeSpan.FromSeconds(10)));
        var load = Stopwatch.StartNew();
        while (Volatile.Read(ref served) < 200 && load.Elapsed < TimeSpan.FromSeconds(20))
        {
            Thread.Yield(); // until the load is flowing
        }
        server.Signal(Native.SIGTERM);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.All(clients, t => Assert.True(t.Join(TimeSpan.FromSeconds(40))));
        Assert.True(served >= 200, $"served {served}");
        Assert.Equal(64, refused);
        Assert.Equal(0, resets);
    }

    /// <summary>Holds one connection, then sends two SIGTERMs and waits for the drain and the termination they start.</summary>
    private static async Task<Socket> TwoStopSignalsWithOneConnectionHeld(ServerProcess server)
    {
        Socket held = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(held, "x"u8.ToArray());
        server.WaitForLog(@"^tcpfork: status: 1/");
        server.Signal(Native.SIGTERM);
        server.WaitForLog(@"^tcpfork: stop: SIGTERM; draining 1 connections");
        server.Signal(Native.SIGTERM);
        server.WaitForLog(@"^tcpfork: stop: second stop signal; sent SIGTERM to 1 children, SIGKILL to any left in 2 s$");
        return held;
    }

    [Fact]
    public async Task A_second_SIGTERM_says_it_was_a_second_signal_not_a_drain_timeout()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--drain-timeout", "60");
        using Socket held = await TwoStopSignalsWithOneConnectionHeld(server);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        Assert.DoesNotContain(server.StderrLines, l => l.Contains("drain timeout", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_third_SIGTERM_says_that_the_SIGKILL_is_already_on_its_way()
    {
        using ServerProcess server = ServerProcess.StartExec(Flavor.AotFork, ["--drain-timeout", "60"], "sh", "-c", "trap '' TERM; cat");
        using Socket held = await TwoStopSignalsWithOneConnectionHeld(server);
        server.Signal(Native.SIGTERM);
        server.WaitForLog(@"^tcpfork: stop: SIGTERM again; already terminating 1 children, SIGKILL to any left in [0-2](\.\d)? s$");
        server.WaitForLog(@"^tcpfork: stop: grace period over; sent SIGKILL to 1 children$");
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public void An_idle_timeout_with_more_connections_than_descriptors_allow_is_refused_at_start()
    {
        string tcpfork = Binaries.AotBinary;
        (int code, string stdout, string stderr) = TcpFork.Tests.Run.Command("sh", "-c", $"ulimit -n 64; exec '{tcpfork}' echo --max-connections 100 --idle-timeout 5");
        Assert.True(code == 2, stdout + stderr);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Matches(@"^tcpfork: usage: --max-connections 100 with --idle-timeout needs about \d+ descriptors \(the parent keeps each connection\), but RLIMIT_NOFILE allows 64 \(hard limit 64\); ", line);
    }

    [Fact]
    public void The_PROXY_protocol_with_more_connections_than_descriptors_allow_is_refused_at_start()
    {
        string tcpfork = Binaries.AotBinary;
        (int code, string stdout, string stderr) = TcpFork.Tests.Run.Command("sh", "-c", $"ulimit -n 64; exec '{tcpfork}' echo --max-connections 100 --proxy-protocol v2");
        Assert.True(code == 2, stdout + stderr);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Matches(@"^tcpfork: usage: --max-connections 100 with --proxy-protocol needs about \d+ descriptors \(the parent holds each connection until its PROXY header is read\), but RLIMIT_NOFILE allows 64 \(hard limit 64\); ", line);
    }

    [Fact]
    public void An_idle_timeout_raises_the_soft_descriptor_limit_when_the_hard_one_allows()
    {
        string tcpfork = Binaries.AotBinary;
        using ServerProcess server = ServerProcess.Start("sh", ["-c", $"ulimit -Sn 64; exec '{tcpfork}' echo --max-connections 100 --idle-timeout 5"]);
        string limits = File.ReadLines($"/proc/{server.Pid}/limits").Single(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        int soft = int.Parse(limits.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(soft >= 100 + 64, limits);
    }
}
