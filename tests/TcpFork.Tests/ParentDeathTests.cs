using System.Net.Sockets;

namespace TcpFork.Tests;

/// <summary>
/// The parent SIGKILLed with connections held (no drain possible). By default children finish their
/// connections, as tcpserver's do; with <c>--die-with-parent</c> (PR_SET_PDEATHSIG) they go with it.
/// Fork, spawn and exec (directly spawned, or through a tcpfork child) side by side.
/// </summary>
public class ParentDeathTests
{
    private const int Held = 3;

    [Theory]
    [InlineData(Flavor.AotFork, false, false)]
    [InlineData(Flavor.AotFork, false, true)]
    [InlineData(Flavor.AotSpawn, false, false)]
    [InlineData(Flavor.AotSpawn, false, true)]
    [InlineData(Flavor.JitSpawn, false, false)]
    [InlineData(Flavor.JitSpawn, false, true)]
    [InlineData(Flavor.AotFork, true, false)]
    [InlineData(Flavor.AotFork, true, true)]
    [InlineData(Flavor.AotSpawn, true, false)]
    [InlineData(Flavor.AotSpawn, true, true)]
    public async Task When_the_parent_is_SIGKILLed_children_finish_their_connections_unless_told_to_die_with_it(Flavor flavor, bool exec, bool dieWithParent)
    {
        string[] extra = dieWithParent ? ["--die-with-parent"] : [];
        using ServerProcess server = exec ? ServerProcess.StartExec(flavor, extra, "cat") : ServerProcess.StartEcho(flavor, extra);
        var clients = new List<Socket>();
        var children = new List<int>();
        try
        {
            for (int i = 0; i < Held; i++)
            {
                Socket s = EchoClient.Connect(server.Port);
                clients.Add(s);
                Assert.Equal("before"u8.ToArray(), await EchoClient.RoundTripAsync(s, "before"u8.ToArray()));
            }
            server.WaitForLog($"^tcpfork: status: {Held}/");
            children.AddRange(Native.Children(server.Pid).Select(c => c.Pid));
            Assert.Equal(Held, children.Count);
            List<int> exits = children.Select(Native.PidFd).ToList();
            Assert.All(exits, fd => Assert.True(fd >= 0));

            server.Signal(Native.SIGKILL);
            server.WaitForExit(TimeSpan.FromSeconds(10));

            if (dieWithParent)
            {
                Assert.All(exits, fd => Assert.True(Native.WaitForExit(fd, TimeSpan.FromSeconds(10)), "a child outlived its parent"));
                foreach (Socket s in clients)
                {
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    try
                    {
                        Assert.Empty(await EchoClient.ReadToEndAsync(s, cts.Token)); // closed by the kernel
                    }
                    catch (SocketException)
                    {
                        // or reset: either way the connection ended with its child
                    }
                }
            }
            else
            {
                foreach (Socket s in clients)
                {
                    Assert.Equal("after"u8.ToArray(), await EchoClient.RoundTripAsync(s, "after"u8.ToArray(), TimeSpan.FromSeconds(10)));
                }
                Assert.All(children, pid => Assert.True(Native.IsAlive(pid)));
                // A successor binds the same port at once: the children hold connections, not the listener.
                using (ServerProcess successor = ServerProcess.StartEcho(flavor, "--listen", $"127.0.0.1:{server.Port}"))
                {
                    Assert.Equal("new"u8.ToArray(), await EchoClient.EchoOnceAsync(successor.Port, "new"u8.ToArray()));
                }
                foreach (Socket s in clients)
                {
                    s.Shutdown(SocketShutdown.Send);
                }
                Assert.All(exits, fd => Assert.True(Native.WaitForExit(fd, TimeSpan.FromSeconds(10)), "a child did not end with its connection"));
            }
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
            foreach (int pid in children)
            {
                Native.Kill(pid, Native.SIGKILL);
            }
        }
    }
}
