using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace TcpFork.Tests;

/// <summary>
/// SIGUSR2 with --upgrade (docs/upgrade.md): the parent starts its binary again and hands it the
/// listeners; the new parent serves, the old one drains and exits 0; no connection is refused or cut.
/// Every generation is found by its <c>upgrade: pid P took over</c> line and ended when the test ends.
/// </summary>
public sealed partial class UpgradeTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>
    /// Each generation seen, with a pidfd opened the moment its line was read: pids wrap around within
    /// seconds on a busy machine, and a pidfd waits for and signals that process, never a later one.
    /// </summary>
    private readonly Dictionary<int, int> _generations = [];

    public static TheoryData<Flavor> Flavors() => new(Flavor.AotFork, Flavor.AotSpawn, Flavor.JitSpawn);

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task The_new_parent_serves_new_connections_while_the_old_one_finishes_its_own_and_exits_0(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--upgrade");
        try
        {
            using Socket held = EchoClient.Connect(server.Port);
            Assert.Equal("one"u8.ToArray(), await EchoClient.RoundTripAsync(held, "one"u8.ToArray()));
            int oldChild = int.Parse(server.WaitForLog(@"^tcpfork: ok (\d+) ").Split(' ')[2], CultureInfo.InvariantCulture);

            server.Signal(Native.SIGUSR2);
            int newPid = TookOver(server, server.Pid);
            Assert.NotEqual(server.Pid, newPid);
            server.WaitForLog($"^tcpfork: upgrade: new parent {newPid} serves; handing over 1 listeners, draining 1 connections$");

            // A new connection is the new parent's child; the old parent has only its connection's and the new parent.
            using Socket fresh = EchoClient.Connect(server.Port);
            Assert.Equal("two"u8.ToArray(), await EchoClient.RoundTripAsync(fresh, "two"u8.ToArray()));
            Assert.Single(Native.Children(newPid));
            Assert.Equal([oldChild, newPid], Native.Children(server.Pid).Select(c => c.Pid).Order());
            if (flavor == Flavor.AotFork)
            {
                // The new parent keeps the invariants: one thread beside the runtime's finalizer.
                Assert.Equal(["tcpfork", ".NET Finalizer"], Native.ThreadNames(newPid).Order().Reverse());
            }

            // The old connection was never cut, and is still served by the old generation's child.
            Assert.Equal("three"u8.ToArray(), await EchoClient.RoundTripAsync(held, "three"u8.ToArray()));
            Assert.False(server.HasExited);
            held.Shutdown(SocketShutdown.Send);
            Assert.Empty(await EchoClient.DrainAsync(held));
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            server.WaitForLog("^tcpfork: exit: 1 connections; 1 drained, 0 terminated, 0 killed$");

            Assert.Equal("four"u8.ToArray(), await EchoClient.RoundTripAsync(fresh, "four"u8.ToArray()));
            Assert.Equal("five"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "five"u8.ToArray()));
        }
        finally
        {
            EndGenerations(server);
        }
    }

    [Fact]
    public async Task Ten_upgrades_under_full_load_refuse_reset_and_fail_no_connection()
    {
        // Run from a copy, so the file can be replaced between two upgrades (as a package upgrade does: a new file renamed over the old).
        string dir = Directory.CreateTempSubdirectory("tcpfork-upgrade-").FullName;
        string exe = Path.Combine(dir, "tcpfork");
        File.Copy(Binaries.AotBinary, exe);
        using ServerProcess server = ServerProcess.Start(exe, ["echo", "-v", "--mode", "fork", "--upgrade"]);
        try
        {
            long original = ExeInode(server.Pid, exe);
            Task<(int Code, string Stdout, string Stderr)> load = Task.Run(() =>
                Run.Command(TimeSpan.FromMinutes(2), Binaries.AotBinary, "bench", $"127.0.0.1:{server.Port}", "-d", "20", "-c", "4", "--json"));
            List<int> generations = [server.Pid];
            for (int i = 0; i < 10; i++)
            {
                UpgradeTurn(server, i, exe);
                Assert.Equal(0, Signal(generations[^1], Native.SIGUSR2));
                generations.Add(TookOver(server, generations[^1]));
                // Generations after the replacement run the new file, those before it the original.
                Assert.Equal(i >= 5, ExeInode(generations[^1], exe) != original);
            }
            (int code, string stdout, string stderr) = await load;
            JsonElement result = JsonDocument.Parse(stdout).RootElement;
            output.WriteLine($"generations {string.Join(' ', generations)}; bench: {stdout}");
            Assert.True(code == 0, stdout + stderr);
            Assert.Equal(0, result.GetProperty("failed").GetInt64());
            Assert.All(result.GetProperty("failures").EnumerateObject(), f => Assert.Equal(0, f.Value.GetInt64()));
            Assert.True(result.GetProperty("ok").GetInt64() > 1000, stdout);
            Assert.Equal(11, generations.Distinct().Count());
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            // Every old generation drained and exited; the last one serves.
            foreach (int old in generations[1..^1])
            {
                Assert.True(Exited(old, TimeSpan.FromSeconds(20)),
                    $"generation {old} still running: {Native.StateOf(old)}, children {string.Join(' ', Native.Children(old).Select(c => $"{c.Pid}:{c.State}:{File.ReadAllText($"/proc/{c.Pid}/wchan")}"))}; stderr:\n{server.Stderr}");
            }
            server.WaitForLogCount("^tcpfork: exit: ", 10);
            Assert.Equal("last"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "last"u8.ToArray()));
        }
        finally
        {
            EndGenerations(server);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Under_systemd_socket_activate_the_passed_socket_goes_from_generation_to_generation_and_MAINPID_follows()
    {
        // As Ten_upgrades_under_full_load_…: 10 upgrades over 20 s of load, the file replaced between two.
        string dir = Directory.CreateTempSubdirectory("tcpfork-upgrade-").FullName;
        string exe = Path.Combine(dir, "tcpfork");
        File.Copy(Binaries.AotBinary, exe);
        int port = SystemdTests.FreePort();
        using var notify = new SystemdTests.NotifySocket();
        using ServerProcess server = SystemdTests.ActivatedTcp(port, [exe, "echo", "-v", "--mode", "fork", "--upgrade"], out Socket first,
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Address });
        try
        {
            using (first)
            {
                Assert.Equal("first"u8.ToArray(), await EchoClient.RoundTripAsync(first, "first"u8.ToArray()));
            }
            Assert.StartsWith("READY=1\n", notify.Receive());
            string listener = $"socket:[{Native.ListeningInode(port)}]";
            Task<(int Code, string Stdout, string Stderr)> load = Task.Run(() =>
                Run.Command(TimeSpan.FromMinutes(2), Binaries.AotBinary, "bench", $"127.0.0.1:{port}", "-d", "20", "-c", "4", "--json"));
            int current = server.Pid;
            HashSet<int> generations = [current];
            for (int i = 0; i < 10; i++)
            {
                UpgradeTurn(server, i, exe);
                Assert.Equal(0, Signal(current, Native.SIGUSR2));
                int next = TookOver(server, current);
                Assert.Matches("^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\n$", NextNotStatus(notify));
                Assert.Equal($"MAINPID={next}\n", NextNotStatus(notify));
                Assert.StartsWith("READY=1\n", NextNotStatus(notify));
                // The very socket systemd-socket-activate bound, still named as the service manager's.
                Assert.Contains(listener, Directory.GetFiles($"/proc/{next}/fd").Select(f => new FileInfo(f).LinkTarget));
                server.WaitForLog($@"^tcpfork: start: pid {next} mode fork listen systemd:web=127\.0\.0\.1:{port} ");
                current = next;
                generations.Add(next);
            }
            (int code, string stdout, string stderr) = await load;
            output.WriteLine($"generations {string.Join(' ', generations)}; bench: {stdout}");
            Assert.True(code == 0, stdout + stderr);
            JsonElement result = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal(0, result.GetProperty("failed").GetInt64());
            Assert.All(result.GetProperty("failures").EnumerateObject(), f => Assert.Equal(0, f.Value.GetInt64()));
            Assert.Equal(11, generations.Count);
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
        }
        finally
        {
            EndGenerations(server);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task A_new_binary_that_fails_to_start_leaves_the_old_parent_serving_and_a_later_upgrade_works()
    {
        string dir = Directory.CreateTempSubdirectory("tcpfork-upgrade-").FullName;
        string exe = Path.Combine(dir, "tcpfork");
        File.Copy(Binaries.AotBinary, exe);
        using ServerProcess server = ServerProcess.Start(exe, ["echo", "--mode", "fork", "--upgrade"]);
        try
        {
            File.Move(exe, exe + ".good");
            File.WriteAllText(exe, "#!/bin/sh\nsleep 1\nexit 1\n");
            File.SetUnixFileMode(exe, UnixFileMode.UserRead | UnixFileMode.UserExecute);

            server.Signal(Native.SIGUSR2);
            int failed = int.Parse(Regex.Match(server.WaitForLog(@"^tcpfork: upgrade: started .* as pid \d+;"), @"as pid (\d+);").Groups[1].Value, CultureInfo.InvariantCulture);
            // A second SIGUSR2 while the first new parent is starting changes nothing.
            server.Signal(Native.SIGUSR2);
            server.WaitForLog($"^tcpfork: warning: upgrade: SIGUSR2 ignored: new parent {failed} is starting$");
            server.WaitForLog($"^tcpfork: warning: upgrade: new parent {failed} exited with status 1 before serving; serving on$");
            Assert.Equal("still"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "still"u8.ToArray()));
            Assert.DoesNotContain(Native.Children(server.Pid), c => c.Pid == failed); // reaped, no zombie
            Assert.DoesNotContain(server.StderrLines, l => l.Contains("unknown", StringComparison.Ordinal));

            File.Move(exe + ".good", exe, overwrite: true);
            server.Signal(Native.SIGUSR2);
            int next = TookOver(server, server.Pid);
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            Assert.Equal("again"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "again"u8.ToArray()));
            Assert.False(Exited(next, TimeSpan.Zero));
        }
        finally
        {
            EndGenerations(server);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_stop_signal_to_the_old_parent_while_it_drains_after_the_hand_over_starts_the_usual_drain_and_spares_the_new_one()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--upgrade", "--drain-timeout", "1");
        try
        {
            using Socket held = EchoClient.Connect(server.Port);
            Assert.Equal("one"u8.ToArray(), await EchoClient.RoundTripAsync(held, "one"u8.ToArray()));
            server.Signal(Native.SIGUSR2);
            int newPid = TookOver(server, server.Pid);
            server.WaitForLog($"^tcpfork: upgrade: new parent {newPid} serves; handing over 1 listeners, draining 1 connections$");
            // A second SIGUSR2 to the old parent, draining now, changes nothing.
            server.Signal(Native.SIGUSR2);
            server.WaitForLog("^tcpfork: warning: upgrade: SIGUSR2 ignored: stopping$");

            server.Signal(Native.SIGTERM);
            server.WaitForLog("^tcpfork: stop: SIGTERM; draining 1 connections for up to 1 s$");
            server.WaitForLog("^tcpfork: stop: drain timeout; sent SIGTERM to 1 children");
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            Assert.Empty(await EchoClient.DrainAsync(held)); // its child ended: EOF
            Assert.False(Exited(newPid, TimeSpan.Zero));
            Assert.Equal("new"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "new"u8.ToArray()));
        }
        finally
        {
            EndGenerations(server);
        }
    }

    [Fact]
    public async Task A_unix_socket_and_its_file_pass_to_the_new_parent_which_removes_the_file_when_it_stops()
    {
        string path = Path.Combine(Path.GetTempPath(), $"tcpfork-upgrade-{Guid.NewGuid():N}.sock");
        using ServerProcess server = ServerProcess.StartUnixEcho(Flavor.AotFork, path, "--upgrade");
        try
        {
            server.Signal(Native.SIGUSR2);
            int newPid = TookOver(server, server.Pid);
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            Assert.True(File.Exists(path), "the old parent removed the socket file the new one serves");
            using (Socket s = EchoClient.ConnectUnix(path))
            {
                Assert.Equal("unix"u8.ToArray(), await EchoClient.RoundTripAsync(s, "unix"u8.ToArray()));
            }
            Assert.Equal(0, Native.PidFdSignal(_generations[newPid], Native.SIGTERM));
            Assert.True(Exited(newPid, TimeSpan.FromSeconds(20)));
            Assert.False(File.Exists(path), "the new parent, its owner now, removes the file when it stops");
        }
        finally
        {
            EndGenerations(server);
            File.Delete(path);
        }
    }

    [SkippableFact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task After_user_the_new_parent_starts_as_that_user_and_serves()
    {
        Skip.If(Environment.UserName != "root", "--user needs root to switch users");
        string dir = Directory.CreateTempSubdirectory("tcpfork-upgrade-").FullName;
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        string exe = Path.Combine(dir, "tcpfork");
        File.Copy(Binaries.AotBinary, exe);
        using ServerProcess server = ServerProcess.Start(exe, ["echo", "--mode", "fork", "--upgrade", "--user", "nobody"]);
        try
        {
            string nobody = Native.StatusField(server.Pid, "Uid"); // read now: the old parent, with no connection, exits at the hand-over
            Assert.DoesNotMatch(@"^0\s", nobody);
            server.Signal(Native.SIGUSR2);
            int next = TookOver(server, server.Pid);
            // Started unprivileged by a parent that had dropped root: nothing left to drop (setgroups would fail).
            Assert.Equal(nobody, Native.StatusField(next, "Uid"));
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            Assert.Equal("nobody"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "nobody"u8.ToArray()));
        }
        finally
        {
            EndGenerations(server);
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// --metrics with --upgrade: the metrics listener is handed over with the others (the new parent used to
    /// bind it again and die of EADDRINUSE); the same port answers, with the new parent's counters, from 0.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task With_metrics_the_new_parent_takes_the_metrics_listener_over_and_counts_its_own_connections(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--metrics", "127.0.0.1:0", "--upgrade");
        try
        {
            int metricsPort = MetricsTests.MetricsPort(server);
            for (int i = 0; i < 2; i++)
            {
                Assert.Equal("old"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "old"u8.ToArray()));
            }
            server.WaitForLogCount("^tcpfork: end ", 2);
            string before = await MetricsTests.ScrapeAsync(metricsPort);
            Assert.Equal(2, MetricsTests.Value(before, "tcpfork_connections_total"));

            server.Signal(Native.SIGUSR2);
            int newPid = TookOver(server, server.Pid);
            // With no connection left, the old parent exits at the hand-over; the port stays open in the new one.
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal("new"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "new"u8.ToArray()));
            }
            server.WaitForLogCount("^tcpfork: end ", 5);
            string after = await MetricsTests.ScrapeAsync(metricsPort);
            Assert.Equal(3, MetricsTests.Value(after, "tcpfork_connections_total"));
            Assert.Equal(3, MetricsTests.Value(after, "tcpfork_children_ended_total{class=\"exit0\"}"));
            Assert.True(MetricsTests.Value(after, "tcpfork_start_time_seconds") > MetricsTests.Value(before, "tcpfork_start_time_seconds"), after);
            Assert.DoesNotContain(server.StderrLines, l => l.Contains("fatal", StringComparison.Ordinal));
            // The scrape children (each exits once it has answered) are reaped by the new parent.
            await Poll.UntilAsync(() => Native.Children(newPid).Count == 0, TimeSpan.FromSeconds(10), () => "a scrape child was not reaped");
        }
        finally
        {
            EndGenerations(server);
        }
    }

    /// <summary>
    /// --proxy-protocol with --upgrade: a connection the old parent accepted and holds in its ring, half
    /// its header read, is still the old parent's at the hand-over; it waits for the rest and serves it.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task A_connection_waiting_for_its_PROXY_header_at_the_hand_over_is_served_by_the_old_parent(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v1", "--upgrade");
        try
        {
            byte[] header = ProxyProtocolTests.V1("192.0.2.1", "192.0.2.2", 5000, 80);
            using Socket s = EchoClient.Connect(server.Port);
            s.NoDelay = true;
            await s.SendAsync(header.AsMemory(0, header.Length / 2));
            // The old parent holds the connection (accepted, in its ring), not the accept queue (there its inode is still 0).
            int clientPort = ((System.Net.IPEndPoint)s.LocalEndPoint!).Port;
            await Poll.UntilAsync(() => Native.ServerSideInode(server.Port, clientPort) is var inode && inode != "0"
                && Directory.GetFiles($"/proc/{server.Pid}/fd").Any(f => ReadLink(f) == $"socket:[{inode}]"),
                TimeSpan.FromSeconds(10), () => "the parent did not accept the connection");

            server.Signal(Native.SIGUSR2);
            int newPid = TookOver(server, server.Pid);
            server.WaitForLog($"^tcpfork: upgrade: new parent {newPid} serves; handing over 1 listeners, draining 0 connections$");
            await s.SendAsync(header.AsMemory(header.Length / 2));
            Assert.Equal("late"u8.ToArray(), await EchoClient.RoundTripAsync(s, "late"u8.ToArray()));
            server.WaitForLog("^tcpfork: proxy: 192\\.0\\.2\\.1:5000 via 127\\.0\\.0\\.1:\\d+$");
            s.Shutdown(SocketShutdown.Send);
            Assert.Empty(await EchoClient.DrainAsync(s));
            Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20), outputEnds: false));
            server.WaitForLog("^tcpfork: exit: 1 connections; 1 drained, 0 terminated, 0 killed$");
            Assert.Equal("next"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, [.. header, .. "next"u8]));
        }
        finally
        {
            EndGenerations(server);
        }
    }

    private static string? ReadLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (IOException)
        {
            return null; // closed meanwhile
        }
    }

    [Fact]
    public async Task Without_upgrade_SIGUSR2_is_logged_and_ignored()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork);
        server.Signal(Native.SIGUSR2);
        server.WaitForLog(@"^tcpfork: warning: upgrade: SIGUSR2 ignored: upgrades are off \(--upgrade, TcpForkServerOptions.Upgrade\)$");
        Assert.Equal("on"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "on"u8.ToArray()));
        Assert.Empty(Native.Children(server.Pid));
    }

    /// <summary>The pid of the generation that took over from <paramref name="from"/>, from its log line; tracked from then on.</summary>
    private int TookOver(ServerProcess server, int from)
    {
        int pid = int.Parse(server.WaitForLog($@"^tcpfork: upgrade: pid (\d+) took over \d+ listeners from pid {from}$", TimeSpan.FromSeconds(30)).Split(' ')[3], CultureInfo.InvariantCulture);
        _generations.TryAdd(pid, Native.PidFd(pid));
        return pid;
    }

    /// <summary>A signal to a generation: through its pidfd once tracked (the first is the test's own child).</summary>
    private int Signal(int pid, int signal) =>
        _generations.TryGetValue(pid, out int pidFd) ? Native.PidFdSignal(pidFd, signal) : Native.Kill(pid, signal);

    /// <summary>Waits for tracked generation <paramref name="pid"/> to exit; true once it has.</summary>
    private bool Exited(int pid, TimeSpan timeout) =>
        _generations[pid] < 0 || Native.WaitForExit(_generations[pid], timeout, close: false);

    /// <summary>
    /// Ends every generation (SIGTERM through its pidfd, then SIGKILL) and their children: no stray process.
    /// One the test did not wait for is found by its log line, and signalled only while its pid is still a tcpfork.
    /// </summary>
    private void EndGenerations(ServerProcess server)
    {
        foreach (Match m in server.StderrLines.Select(l => TookOverLine().Match(l)).Where(m => m.Success))
        {
            int pid = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            if (!_generations.ContainsKey(pid))
            {
                int pidFd = Native.PidFd(pid);
                bool ours = pidFd >= 0 && File.ReadAllText($"/proc/{pid}/cmdline").Contains("tcpfork", StringComparison.Ordinal);
                _generations[pid] = ours ? pidFd : -1;
                if (!ours && pidFd >= 0)
                {
                    Native.CloseFd(pidFd);
                }
            }
        }
        foreach ((int pid, int pidFd) in _generations.Where(g => g.Value >= 0))
        {
            List<int> children = Native.Children(pid).Select(c => c.Pid).ToList();
            Native.PidFdSignal(pidFd, Native.SIGTERM);
            if (!Native.WaitForExit(pidFd, TimeSpan.FromSeconds(10), close: false))
            {
                Native.PidFdSignal(pidFd, Native.SIGKILL);
            }
            children.ForEach(c => Native.Kill(c, Native.SIGKILL));
        }
    }

    public void Dispose()
    {
        foreach (int pidFd in _generations.Values.Where(fd => fd >= 0))
        {
            Native.CloseFd(pidFd);
        }
    }

    /// <summary>The inode of <paramref name="exe"/> as process <paramref name="pid"/> has it mapped (its executable's file, replaced or not).</summary>
    private static long ExeInode(int pid, string exe) =>
        long.Parse(File.ReadLines($"/proc/{pid}/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .First(f => f.Length >= 6 && f[5] == exe)[4], CultureInfo.InvariantCulture);

    /// <summary>
    /// Upgrade <paramref name="i"/> of 10 comes once the load has ended another 300 connections (the
    /// children's <c>end</c> lines at <c>-v</c>, every generation's), so each generation serves under load before it
    /// hands over; before the sixth, <paramref name="exe"/> is replaced as a package upgrade does it (a new
    /// file renamed over the old).
    /// </summary>
    private static void UpgradeTurn(ServerProcess server, int i, string exe)
    {
        server.WaitForLogCount(@"^tcpfork: end \d+ status 0$", 300 * (i + 1), TimeSpan.FromSeconds(30));
        if (i == 5)
        {
            File.Copy(Binaries.AotBinary, exe + ".new");
            File.Move(exe + ".new", exe, overwrite: true);
        }
    }

    /// <summary>The next sd_notify datagram that is not a periodic STATUS= (those come whenever the load changes the count).</summary>
    private static string NextNotStatus(SystemdTests.NotifySocket notify)
    {
        for (int i = 0; i < 1000; i++)
        {
            string message = notify.Receive();
            if (!message.StartsWith("STATUS=", StringComparison.Ordinal))
            {
                return message;
            }
        }
        throw new InvalidOperationException("only STATUS= messages");
    }

    [GeneratedRegex(@"^tcpfork: upgrade: pid (\d+) took over ")]
    private static partial Regex TookOverLine();
}
