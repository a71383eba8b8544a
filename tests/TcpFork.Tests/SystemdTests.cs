using System.Net;
using System.Net.Sockets;

namespace TcpFork.Tests;

/// <summary>
/// Under systemd: socket activation, tested with the real systemd-socket-activate (the systemd package),
/// which binds, sets LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES and execs tcpfork in its own process.
/// </summary>
public class SystemdTests
{
    private const string SocketActivate = "/usr/bin/systemd-socket-activate";

    public static TheoryData<Flavor> AotFlavors() => new(Flavor.AotFork, Flavor.AotSpawn);

    /// <summary>A port free a moment ago: bound to port 0 and closed.</summary>
    internal static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    /// <summary>
    /// systemd-socket-activate binds, waits for the first connection and only then execs tcpfork (in its
    /// own process, so the pid stays): <paramref name="first"/> connects that one, which waits in the queue.
    /// </summary>
    private static ServerProcess Activated(string listen, string[] command, Func<Socket> first, out Socket client, IDictionary<string, string>? env = null)
    {
        Assert.True(File.Exists(SocketActivate), $"{SocketActivate} is missing: install the systemd package (.ci/run does)");
        ServerProcess server = ServerProcess.Start(SocketActivate,
            // It passes its program a few variables of its own only, and those named by -E.
            ["-l", listen, "--fdname", "web", .. (env?.Keys ?? []).SelectMany(k => new[] { "-E", k }), "--", .. command], listeners: 0, env);
        try
        {
            server.WaitForLog("^Listening on .* as 3\\.$");
            client = first();
        }
        catch
        {
            server.Dispose();
            throw;
        }
        return server;
    }

    internal static ServerProcess ActivatedTcp(int port, string[] command, out Socket client, IDictionary<string, string>? env = null)
    {
        ServerProcess server = Activated($"127.0.0.1:{port}", command, () => EchoClient.Connect(port), out client, env);
        server.Ports.Add(port);
        return server;
    }

    [Theory]
    [MemberData(nameof(AotFlavors))]
    public async Task An_activated_echo_server_serves_the_passed_socket_its_children_hold_no_listener_and_SIGTERM_drains(Flavor flavor)
    {
        int port = FreePort();
        (string exe, string[] mode) = Binaries.For(flavor);
        using ServerProcess server = ActivatedTcp(port, [exe, "echo", .. mode, "-v"], out Socket first);
        using (first)
        {
            // The connection that woke the service waited in the queue, and is served.
            Assert.Equal("first"u8.ToArray(), await EchoClient.RoundTripAsync(first, "first"u8.ToArray()));
        }
        server.WaitForOutput($"^Listening for connections on port {port}$");
        server.WaitForLog($@"^tcpfork: start: pid {server.Pid} mode \w+ listen systemd:web=127\.0\.0\.1:{port} ");
        // The parent holds the very socket systemd-socket-activate bound (it exec'd tcpfork in its own process).
        string listener = $"socket:[{Native.ListeningInode(port)}]";
        Assert.Contains(listener, Directory.GetFiles($"/proc/{server.Pid}/fd").Select(f => new FileInfo(f).LinkTarget));

        await ChildLifecycleTests.AssertTheChildHoldsOnlyItsConnection(server, flavor);
        Assert.Equal("second"u8.ToArray(), await EchoClient.EchoOnceAsync(port, "second"u8.ToArray()));

        server.Signal(Native.SIGTERM);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
        server.WaitForLog("^tcpfork: exit: ");
    }

    [Fact]
    public async Task An_activated_exec_server_gives_its_program_none_of_the_service_managers_variables()
    {
        int port = FreePort();
        using var notify = new NotifySocket();
        var env = new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Address, ["WATCHDOG_USEC"] = "60000000" };
        using ServerProcess server = ActivatedTcp(port, [Binaries.AotBinary, "exec", "-v", "--", "/usr/bin/env"], out Socket s, env);
        using Socket client = s;
        string output = System.Text.Encoding.UTF8.GetString(await EchoClient.DrainAsync(s));
        Assert.Contains($"TCPLOCALPORT={port}", output);
        Assert.DoesNotContain("LISTEN_", output);
        Assert.DoesNotContain("NOTIFY_SOCKET", output);
        Assert.DoesNotContain("WATCHDOG_", output);
    }

    [Theory]
    [MemberData(nameof(AotFlavors))]
    public async Task An_activated_unix_socket_is_served_and_its_file_left_to_the_service_manager(Flavor flavor)
    {
        string path = Path.Combine(Path.GetTempPath(), $"tcpfork-activated-{Guid.NewGuid():N}.sock");
        (string exe, string[] mode) = Binaries.For(flavor);
        try
        {
            using (ServerProcess server = Activated(path, [exe, "echo", .. mode, "-v"], () => EchoClient.ConnectUnix(path), out Socket s))
            {
                using (s)
                {
                    server.WaitForLog($@"^tcpfork: start: .* listen systemd:web=unix:{System.Text.RegularExpressions.Regex.Escape(path)} ");
                    Assert.Equal("unix"u8.ToArray(), await EchoClient.RoundTripAsync(s, "unix"u8.ToArray()));
                }
                server.Signal(Native.SIGTERM);
                Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
            }
            Assert.True(File.Exists(path), "tcpfork removed the socket file the service manager created");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Listen_beside_activated_sockets_is_a_usage_error()
    {
        int port = FreePort();
        using ServerProcess server = ActivatedTcp(port, [Binaries.AotBinary, "echo", "--listen", "127.0.0.1:0"], out Socket s);
        using Socket client = s;
        Assert.Equal(2, server.WaitForExit(TimeSpan.FromSeconds(20)));
        server.WaitForLog("^tcpfork: usage: --listen cannot be combined with socket activation");
    }

    public static TheoryData<Flavor, bool> NotifyCases() => new()
    {
        { Flavor.AotFork, false },
        { Flavor.AotSpawn, true },
    };

    [Theory]
    [MemberData(nameof(NotifyCases))]
    public async Task The_service_manager_hears_ready_status_reloading_and_stopping(Flavor flavor, bool abstractName)
    {
        using var notify = new NotifySocket(abstractName);
        (string exe, string[] mode) = Binaries.For(flavor);
        using ServerProcess server = ServerProcess.Start(exe, ["echo", .. mode, "-v"], 1, new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Address });

        Assert.Equal("READY=1\nSTATUS=active 0/1000 connections\n", notify.Receive());
        using (Socket s = EchoClient.Connect(server.Port))
        {
            await EchoClient.RoundTripAsync(s, "x"u8.ToArray());
            Assert.Equal("STATUS=active 1/1000 connections\n", notify.Receive());
            server.Signal(Native.SIGHUP);
            Assert.Matches("^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\n$", notify.Receive());
            Assert.Equal("READY=1\n", notify.Receive());
            server.Signal(Native.SIGTERM);
            Assert.Equal("STOPPING=1\nSTATUS=stopping: draining 1 connections\n", notify.Receive());
        }
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public void The_watchdog_is_fed_every_half_WATCHDOG_USEC()
    {
        using var notify = new NotifySocket();
        using ServerProcess server = ServerProcess.Start(Binaries.AotBinary, ["echo"], 1,
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Address, ["WATCHDOG_USEC"] = "400000" });
        Assert.StartsWith("READY=1\n", notify.Receive());
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal("WATCHDOG=1\n", notify.Receive());
        }
        // The first right after READY, then one every 200 ms: about 800 ms for the five, never much less.
        Assert.InRange(started.ElapsedMilliseconds, 700, 5000);
    }

    /// <summary>A unix datagram socket bound by the test, standing in for systemd's NOTIFY_SOCKET.</summary>
    internal sealed class NotifySocket : IDisposable
    {
        private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        private readonly string? _file;

        public NotifySocket(bool abstractName = false)
        {
            string name = $"tcpfork-notify-{Guid.NewGuid():N}";
            if (abstractName)
            {
                _socket.Bind(new UnixDomainSocketEndPoint("\0" + name));
                Address = "@" + name;
            }
            else
            {
                _file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), name + ".sock");
                _socket.Bind(new UnixDomainSocketEndPoint(_file));
                Address = _file;
            }
            _socket.ReceiveTimeout = 20_000;
        }

        /// <summary>As NOTIFY_SOCKET gives it: a path, or @ and an abstract name.</summary>
        public string Address { get; }

        /// <summary>The next datagram (within 20 s, else the receive throws).</summary>
        public string Receive()
        {
            byte[] buffer = new byte[4096];
            int n = _socket.Receive(buffer);
            return System.Text.Encoding.UTF8.GetString(buffer, 0, n);
        }

        public void Dispose()
        {
            _socket.Dispose();
            if (_file is not null)
            {
                File.Delete(_file);
            }
        }
    }
}
