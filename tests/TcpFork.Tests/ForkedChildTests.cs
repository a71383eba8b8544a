using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>
/// What a library user's fork-mode parent and child get (tests/TcpFork.TestHost): the child keeps the
/// descriptors Main and the runtime opened and none of the parent's own, a parent with threads is
/// refused or served in spawn mode, Main runs once, a bind failure is an exception Main can catch.
/// </summary>
public class ForkedChildTests
{
    private static async Task<string> Line(Socket s, string send)
    {
        await s.SendAsync(Encoding.UTF8.GetBytes(send));
        var reply = new StringBuilder();
        byte[] buffer = new byte[65536];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (!reply.ToString().EndsWith('\n'))
        {
            int n = await s.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (n == 0)
            {
                break;
            }
            reply.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return reply.ToString().TrimEnd('\n');
    }

    /// <summary>A process's descriptors: number → link target (a socket or pipe carries its inode).</summary>
    private static Dictionary<int, string> Descriptors(int pid) => Directory.GetFiles($"/proc/{pid}/fd").ToDictionary(
        f => int.Parse(Path.GetFileName(f), System.Globalization.CultureInfo.InvariantCulture), f => new FileInfo(f).LinkTarget ?? "");

    /// <summary>The inodes of the files an epoll descriptor watches (its fdinfo's tfd lines).</summary>
    private static IEnumerable<string> Watched(int pid, int epoll) => File.ReadLines($"/proc/{pid}/fdinfo/{epoll}")
        .Select(l => Regex.Match(l, @"^tfd:.* ino:([0-9a-f]+)")).Where(m => m.Success).Select(m => Convert.ToInt64(m.Groups[1].Value, 16).ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static int ChildServing(ServerProcess server, Socket client) =>
        int.Parse(Regex.Match(server.WaitForLog($@"^tcpfork: pid \d+ from 127\.0\.0\.1:{((IPEndPoint)client.LocalEndPoint!).Port}$"), @"pid (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.JitSpawn)]
    public async Task A_user_child_keeps_what_Main_and_the_runtime_opened_and_none_of_the_parents_descriptors(Flavor flavor)
    {
        string file = Path.GetTempFileName();
        await File.WriteAllTextAsync(file, "K");
        try
        {
            using ServerProcess server = ServerProcess.Start(Binaries.TestHost(flavor), ["descriptors", flavor == Flavor.AotFork ? "fork" : "spawn", file]);
            Dictionary<int, string> parent = Descriptors(server.Pid);
            string listener = $"socket:[{Native.ListeningInode(server.Port)}]";
            Assert.True(parent.ContainsValue(listener));
            // The first connection stays open while the second child runs: the parent keeps a copy of it (idle timeout).
            using Socket first = EchoClient.Connect(server.Port);
            int firstChild = ChildServing(server, first);
            Assert.Equal("ready", await Line(first, ""));
            using Socket second = EchoClient.Connect(server.Port);
            int secondChild = ChildServing(server, second);
            Assert.Equal("ready", await Line(second, ""));
            string firstConnection = $"socket:[{Native.ServerSideInode(server.Port, ((IPEndPoint)first.LocalEndPoint!).Port)}]";
            Assert.True(Descriptors(firstChild).ContainsValue(firstConnection));

            Dictionary<int, string> child = Descriptors(secondChild);
            string listing = string.Join(", ", child.Select(kv => $"{kv.Key}->{kv.Value}"));
            Assert.True(child.ContainsValue(file), listing);                       // Main's, inherited (fork) or reopened (spawn)
            Assert.False(child.ContainsValue(listener), listing);                  // the parent's listener
            Assert.False(child.ContainsValue(firstConnection), listing);           // another child's connection, kept by the parent
            Assert.False(child.Values.Any(v => v.Contains("pagemap", StringComparison.Ordinal) || v == "anon_inode:[signalfd]"), listing);
            string listenerInode = listener[8..^1];
            Assert.All(child.Where(kv => kv.Value == "anon_inode:[eventpoll]"), kv => Assert.DoesNotContain(listenerInode, Watched(secondChild, kv.Key)));
            if (flavor == Flavor.AotFork)
            {
                // The runtime's own descriptors, opened by number before Run(), are still there under their numbers.
                Assert.All(parent.Where(kv => kv.Key > 2 && kv.Value == "/dev/urandom"), kv => Assert.Equal("/dev/urandom", child.GetValueOrDefault(kv.Key)));
            }
            Assert.Matches(@"^kept \d+ read 1:K fds ", await Line(second, "go\n"));
            Assert.Matches(@"^kept \d+ read 1:K fds ", await Line(first, "go\n"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Mode_fork_refuses_a_parent_with_threads_and_names_them()
    {
        (int code, string stdout, string stderr) = Run.Command(Binaries.TestHost(Flavor.AotFork), "threads-before-run", "fork");
        Assert.True(code == 3, stdout + stderr);
        Assert.StartsWith("refused: ProcessMode.Fork needs a parent with no thread but the runtime's finalizer, and these are running: ", stdout, StringComparison.Ordinal);
        Assert.Contains("'.NET TP Worker' (the thread pool: await, Task.Run, Parallel, ThreadPool)", stdout, StringComparison.Ordinal);
        Assert.Contains("'.NET Timer' (a Timer or Task.Delay)", stdout, StringComparison.Ordinal);
        Assert.Contains("TcpForkServerOptions.Mode", stdout);
    }

    [Fact]
    public async Task Mode_auto_serves_a_parent_with_threads_in_spawn_mode_with_one_warning()
    {
        using ServerProcess server = ServerProcess.Start(Binaries.TestHost(Flavor.AotFork), ["threads-before-run", "auto"]);
        using Socket s = EchoClient.Connect(server.Port);
        string reply = await Line(s, "");
        Assert.Matches(@"^served by \d+$", reply);
        server.WaitForLog(@"^tcpfork: start: pid \d+ mode spawn ");
        Assert.Single(server.StderrLines, l => l.StartsWith("tcpfork: warning: fork mode needs a parent with one thread; running: ", StringComparison.Ordinal) && l.Contains("'.NET TP Worker'", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(Flavor.AotFork, 1)]
    [InlineData(Flavor.JitSpawn, 2)]
    public async Task Main_runs_once_in_a_fork_mode_parent_and_twice_in_a_spawn_mode_parent(Flavor flavor, int parentRuns)
    {
        string log = Path.GetTempFileName();
        try
        {
            using (ServerProcess server = ServerProcess.Start(Binaries.TestHost(flavor), ["state", flavor == Flavor.AotFork ? "fork" : "spawn"],
                env: new Dictionary<string, string> { ["TESTHOST_MAIN_LOG"] = log }))
            {
                using Socket s = EchoClient.Connect(server.Port);
                Assert.StartsWith("made-by", await Line(s, ""), StringComparison.Ordinal);
                server.WaitForLog(@"^tcpfork: end \d+ status 0$");
                string[] runs = await File.ReadAllLinesAsync(log);
                Assert.Equal(parentRuns, runs.Count(l => l == $"main {server.Pid}"));
                // A spawned child runs Main too (the spawn rule); a forked one does not.
                Assert.Equal(flavor == Flavor.AotFork ? 0 : 1, runs.Count(l => l != $"main {server.Pid}"));
            }
        }
        finally
        {
            File.Delete(log);
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.JitSpawn)]
    public void A_port_in_use_is_a_BindException_Main_can_catch(Flavor flavor)
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        string port = ((IPEndPoint)taken.LocalEndPoint!).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        (int code, string stdout, string stderr) = Run.Command(Binaries.TestHost(flavor), "bind-conflict", flavor == Flavor.AotFork ? "fork" : "spawn", port);
        Assert.True(code == 4, stdout + stderr);
        Assert.Equal($"caught BindException: unable to bind 127.0.0.1:{port}: Address already in use\n", stdout);
        Assert.DoesNotContain("Unhandled", stderr, StringComparison.Ordinal);
    }
}
