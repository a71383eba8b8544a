using System.Net.Sockets;

namespace TcpFork.Tests;

/// <summary>
/// Resource failures made real: fork failing under a pids cgroup, accept failing with EMFILE. The
/// parent logs, backs off, closes what it must and goes on serving.
/// </summary>
public class FaultTests
{
    [SkippableTheory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task When_fork_fails_the_connection_is_closed_and_the_server_carries_on(Flavor flavor)
    {
        PidsCgroup? made = PidsCgroup.TryCreate(out string missing);
        Skip.If(made is null, $"FAULT NOT SET UP: no pids cgroup to make fork fail on purpose: {missing}");
        using PidsCgroup group = made!;
        using ServerProcess server = ServerProcess.StartEcho(flavor); // disposed first: the group's Dispose waits for it to empty
        Skip.IfNot(group.TryAdd(server.Pid, out string why), $"FAULT NOT SET UP: {why}");
        // Threads count toward pids.max: with the limit at the current count, fork/spawn gets EAGAIN.
        group.Limit(group.Current);

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

        // A client during the back-off waits in the backlog and is served once it is over.
        group.Limit(null);
        Assert.Equal("back"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "back"u8.ToArray()));
        server.WaitForLog(@"^tcpfork: end \d+ status 0$");
        Assert.False(server.HasExited);
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
