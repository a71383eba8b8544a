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

        await AssertClosedUnservedAsync(server.Port, "lost"u8.ToArray());
        server.WaitForLog(@"^tcpfork: warning: unable to (fork|spawn): Resource temporarily unavailable; closed connection from 127\.0\.0\.1:\d+$");

        // A client during the back-off waits in the backlog and is served once it is over.
        group.Limit(null);
        Assert.Equal("back"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "back"u8.ToArray()));
        server.WaitForLog(@"^tcpfork: end \d+ status 0$");
        Assert.False(server.HasExited);
    }

    /// <summary>
    /// Room for the spawn itself but not for one more thread: the child's runtime cannot start, and
    /// exits before Main — silently under NativeAOT (255), with the host's "Failed to create CoreCLR"
    /// under the JIT (137). The parent says what that status means.
    /// </summary>
    [SkippableTheory]
    [InlineData(Flavor.AotSpawn, 255)]
    [InlineData(Flavor.JitSpawn, 137)]
    public async Task A_spawned_child_whose_runtime_cannot_start_is_logged_with_the_reason(Flavor flavor, int status)
    {
        PidsCgroup? made = PidsCgroup.TryCreate(out string missing);
        Skip.If(made is null, $"FAULT NOT SET UP: no pids cgroup to make a child's threads fail on purpose: {missing}");
        using PidsCgroup group = made!;
        using ServerProcess server = ServerProcess.StartEcho(flavor); // disposed first: the group's Dispose waits for it to empty
        Skip.IfNot(group.TryAdd(server.Pid, out string why), $"FAULT NOT SET UP: {why}");
        // Room for the spawn itself, not for one more thread.
        group.Limit(group.Current + 1);
        await AssertClosedUnservedAsync(server.Port, "lost"u8.ToArray());
        string line = server.WaitForLog(@"^tcpfork: warning: \d+ exited \d+ after \d+ ms, as a \.NET runtime that could not start: its handler most likely never ran; usually no thread could be created \(a pids cgroup's pids\.max, RLIMIT_NPROC\) or no memory mapped$");
        string pid = line.Split(' ')[2];
        Assert.Contains($"tcpfork: end {pid} status {status}", server.StderrLines);
        Assert.StartsWith($"tcpfork: warning: {pid} exited {status} after", line, StringComparison.Ordinal);

        group.Limit(null);
        Assert.Equal("back"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "back"u8.ToArray()));
        Assert.Single(server.StderrLines, l => l.Contains("could not start", StringComparison.Ordinal));
    }

    /// <summary>Returns once process <paramref name="pid"/> has gone to sleep and woken <paramref name="wakes"/> more times (its voluntary context switches).</summary>
    private static async Task WaitForWakesAsync(int pid, int wakes, TimeSpan limit)
    {
        long Switches() => long.Parse(Native.StatusField(pid, "voluntary_ctxt_switches"), System.Globalization.CultureInfo.InvariantCulture);
        long target = Switches() + wakes;
        await Poll.UntilAsync(() => Switches() >= target, limit, () => $"the parent woke fewer than {wakes} times in {limit.TotalSeconds} s");
    }

    /// <summary>Sends <paramref name="data"/> and asserts the connection ends without it echoed (closed, or reset).</summary>
    private static async Task AssertClosedUnservedAsync(int port, byte[] data)
    {
        using Socket s = EchoClient.Connect(port);
        await s.SendAsync(data, SocketFlags.None);
        Assert.Empty(await EchoClient.DrainAsync(s)); // closed, not echoed
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

    /// <summary>
    /// While accept fails with EMFILE the parent pauses 100 ms and tries again: ten warnings a second
    /// before repeats were counted. Now the first is written, the rest are one summary line with the count.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Repeated_EMFILE_warnings_are_counted_not_repeated(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        var open = Directory.GetFiles($"/proc/{server.Pid}/fd").Select(f => int.Parse(Path.GetFileName(f), System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
        int lowestFree = Enumerable.Range(0, 100_000).First(fd => !open.Contains(fd));
        Native.RLimit old = GetFileLimit(server.Pid);
        SetFileLimit(server.Pid, new Native.RLimit { Current = (ulong)lowestFree, Max = old.Max });
        try
        {
            using Socket s = EchoClient.Connect(server.Port);
            server.WaitForLog(@"^tcpfork: warning: accept: Too many open files; pausing 100 ms$");
            // The condition lasting: the parent wakes from each 100 ms back-off to a failing accept; 15 such
            // wakes (its voluntary context switches: it sleeps only in epoll_wait) are ~15 more failures.
            await WaitForWakesAsync(server.Pid, 15, TimeSpan.FromSeconds(20));
            SetFileLimit(server.Pid, old);
            Assert.Equal("served later"u8.ToArray(), await EchoClient.ExchangeAsync(s, "served later"u8.ToArray()));
            string summary = server.WaitForLog(@"^tcpfork: warning: accept: Too many open files; repeated \d+ times in the last [\d.]+ s; cleared$");
            int repeated = int.Parse(summary.Split(' ')[8], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(repeated >= 3, summary);
            Assert.Equal(2, server.StderrLines.Count(l => l.Contains("Too many open files", StringComparison.Ordinal)));
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
