using System.Net.Sockets;

namespace TcpFork.Tests;

/// <summary>
/// Resource failures made real: fork failing under a pids cgroup, accept failing with EMFILE. The
/// parent logs, backs off, closes what it must and goes on serving.
/// </summary>
public class FaultTests
{
    private const string PidsRoot = "/sys/fs/cgroup/pids";

    [SkippableTheory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task When_fork_fails_the_connection_is_closed_and_the_server_carries_on(Flavor flavor)
    {
        Skip.IfNot(Directory.Exists(PidsRoot) && File.Exists(Path.Combine(PidsRoot, "cgroup.procs")),
            $"FAULT NOT SET UP: no pids cgroup (v1) at {PidsRoot}; cannot make fork fail on purpose");
        string group = Path.Combine(PidsRoot, $"tcpfork-test-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(group);
        }
        catch (UnauthorizedAccessException e)
        {
            Skip.If(true, $"FAULT NOT SET UP: cannot create a pids cgroup ({e.Message}); run as root");
        }
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        try
        {
            File.WriteAllText(Path.Combine(group, "cgroup.procs"), server.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            // Threads count toward pids.max: with the limit at the current count, fork/spawn gets EAGAIN.
            File.WriteAllText(Path.Combine(group, "pids.max"), File.ReadAllText(Path.Combine(group, "pids.current")).Trim());

            using (Socket s = EchoClient.Connect(server.Port))
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                await s.SendAsync("lost"u8.ToArray(), SocketFlags.None, cts.Token);
                byte[] back;
                try
                {
                    back = await EchoClient.ReadToEndAsync(s, cts.Token);
                }
                catch (SocketException)
                {
                    back = [];
                }
                Assert.Empty(back); // closed, not echoed
            }
            server.WaitForLog(@"^tcpfork: warning: unable to (fork|spawn): Resource temporarily unavailable; closed connection from 127\.0\.0\.1:\d+$");

            File.WriteAllText(Path.Combine(group, "pids.max"), "max");
            await Task.Delay(300); // past the back-off
            Assert.Equal("back"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "back"u8.ToArray()));
            Assert.False(server.HasExited);
        }
        finally
        {
            File.WriteAllText(Path.Combine(group, "pids.max"), "max");
            server.Dispose();
            for (int i = 0; i < 100 && File.ReadAllText(Path.Combine(group, "cgroup.procs")).Trim().Length > 0; i++)
            {
                await Task.Delay(50);
            }
            Directory.Delete(group);
        }
    }

    [Fact]
    public async Task When_accept_fails_with_EMFILE_the_server_backs_off_and_recovers()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork);
        // accept(2) takes the lowest free descriptor: a soft limit there makes it fail with EMFILE.
        var open = Directory.GetFiles($"/proc/{server.Pid}/fd").Select(f => int.Parse(Path.GetFileName(f), System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
        int lowestFree = Enumerable.Range(0, 100_000).First(fd => !open.Contains(fd));
        Native.RLimit old = GetFileLimit(server.Pid);
        SetFileLimit(server.Pid, new Native.RLimit { Current = (ulong)lowestFree, Max = old.Max });
        try
        {
            using Socket s = EchoClient.Connect(server.Port); // waits in the backlog while accept fails
            server.WaitForLog(@"^tcpfork: warning: accept: Too many open files; pausing 100 ms$");
            SetFileLimit(server.Pid, old);
            Assert.Equal("served later"u8.ToArray(), await EchoClient.ExchangeAsync(s, "served later"u8.ToArray()));
        }
        finally
        {
            SetFileLimit(server.Pid, old);
        }
    }

    private static unsafe Native.RLimit GetFileLimit(int pid)
    {
        Native.RLimit current;
        Assert.Equal(0, Native.PrLimit(pid, Native.RLIMIT_NOFILE, null, &current));
        return current;
    }

    private static unsafe void SetFileLimit(int pid, Native.RLimit limit) =>
        Assert.Equal(0, Native.PrLimit(pid, Native.RLIMIT_NOFILE, &limit, null));
}
