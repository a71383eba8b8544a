using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TcpFork.Tests;

/// <summary>
/// --proxy-protocol: behind a real HAProxy (send-proxy, send-proxy-v2) the client the header names is the
/// one judged (--deny, the Verify hook), logged and passed on (TCPREMOTEIP, RemoteEndPoint); and the
/// headers a proxy must never get away with — garbage, cut short, late, too long, from a peer outside
/// --proxy-from — are logged and closed while the server serves on. Clients bind distinct loopback
/// addresses (127.0.0.3, 127.0.0.4) so the test tells them from the proxy (127.0.0.1).
/// </summary>
public class ProxyProtocolTests
{
    private static readonly byte[] s_data = "hello through the proxy"u8.ToArray();

    // ---- Behind HAProxy ----

    [Theory]
    [InlineData(Flavor.AotFork, "send-proxy", "v1")]
    [InlineData(Flavor.AotFork, "send-proxy-v2", "v2")]
    [InlineData(Flavor.AotSpawn, "send-proxy", "any")]
    [InlineData(Flavor.AotSpawn, "send-proxy-v2", "any")]
    public async Task Behind_haproxy_the_client_is_judged_and_logged_not_the_proxy(Flavor flavor, string sendProxy, string version)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", version, "--proxy-from", "127.0.0.1", "--deny", "127.0.0.3");
        using HaProxy haproxy = HaProxy.Start(server.Port, sendProxy);
        int front = haproxy.Front;

        using (Socket served = ConnectFrom("127.0.0.4", front))
        {
            int port = ((IPEndPoint)served.LocalEndPoint!).Port;
            Assert.Equal(s_data, await EchoClient.ExchangeAsync(served, s_data));
            server.WaitForLog($"^tcpfork: proxy: 127\\.0\\.0\\.4:{port} via 127\\.0\\.0\\.1:\\d+$");
            server.WaitForLog($"^tcpfork: ok \\d+ :127\\.0\\.0\\.1:{front} :127\\.0\\.0\\.4::{port}$");
        }
        using (Socket denied = ConnectFrom("127.0.0.3", front))
        {
            int port = ((IPEndPoint)denied.LocalEndPoint!).Port;
            await denied.SendAsync(s_data);
            Assert.Empty(await EchoClient.DrainAsync(denied));
            server.WaitForLog($"^tcpfork: deny 0 :127\\.0\\.0\\.1:{front} :127\\.0\\.0\\.3::{port} rule$");
        }
        Assert.DoesNotContain(server.StderrLines, l => l.Contains("warning", StringComparison.Ordinal));
    }

    /// <summary>An exec'd program's UCSPI variables: spawned directly, and through a forked or spawned tcpfork child (--limit-*), which reads them from its Connection.</summary>
    [Theory]
    [InlineData(Flavor.AotFork, "send-proxy", false)]
    [InlineData(Flavor.AotFork, "send-proxy-v2", true)]
    [InlineData(Flavor.AotSpawn, "send-proxy", true)]
    [InlineData(Flavor.AotSpawn, "send-proxy-v2", false)]
    public async Task Behind_haproxy_an_exec_program_sees_the_client_in_TCPREMOTEIP(Flavor flavor, string sendProxy, bool throughChild)
    {
        string[] extra = ["--proxy-protocol", "any", "--proxy-from", "127.0.0.1/8", .. throughChild ? new[] { "--limit-nofile", "64" } : []];
        using ServerProcess server = ServerProcess.StartExec(flavor, extra, "sh", "-c", "echo \"$TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT $PROTO\"");
        using HaProxy haproxy = HaProxy.Start(server.Port, sendProxy);
        int front = haproxy.Front;

        using Socket client = ConnectFrom("127.0.0.3", front);
        int port = ((IPEndPoint)client.LocalEndPoint!).Port;
        string line = Encoding.ASCII.GetString(await EchoClient.DrainAsync(client)).Trim();
        Assert.Equal($"127.0.0.3 {port} 127.0.0.1 {front} TCP", line);
    }

    /// <summary>The library: the handler's RemoteEndPoint/LocalEndPoint and the Verify hook, in a forked child and in a spawned one (JIT).</summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.JitSpawn)]
    public async Task Behind_haproxy_a_library_handler_and_its_verify_hook_see_the_client(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.Start(Binaries.TestHost(flavor), ["proxy", flavor == Flavor.AotFork ? "fork" : "spawn"]);
        using HaProxy haproxy = HaProxy.Start(server.Port, "send-proxy-v2");
        int front = haproxy.Front;

        using (Socket client = ConnectFrom("127.0.0.3", front))
        {
            int port = ((IPEndPoint)client.LocalEndPoint!).Port;
            Assert.Equal($"from 127.0.0.3:{port} to 127.0.0.1:{front}\n", Encoding.UTF8.GetString(await EchoClient.DrainAsync(client)));
        }
        using (Socket refused = ConnectFrom("127.0.0.4", front))
        {
            int port = ((IPEndPoint)refused.LocalEndPoint!).Port;
            Assert.Empty(await EchoClient.DrainAsync(refused));
            server.WaitForLog($"^tcpfork: deny 0 :127\\.0\\.0\\.1:{front} :127\\.0\\.0\\.4::{port} verify$");
        }
    }

    /// <summary>HAProxy's health checks on a send-proxy-v2 server send a LOCAL header: served, as connections from the proxy itself.</summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public void Haproxys_v2_health_checks_are_LOCAL_and_judged_as_the_proxy(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v2", "--proxy-from", "127.0.0.1");
        using HaProxy haproxy = HaProxy.Start(server.Port, "send-proxy-v2 check inter 100");
        server.WaitForLogCount($"^tcpfork: ok \\d+ :127\\.0\\.0\\.1:{server.Port} :127\\.0\\.0\\.1::\\d+$", 3);
        Assert.DoesNotContain(server.StderrLines, l => l.StartsWith("tcpfork: proxy: ", StringComparison.Ordinal) || l.Contains("warning", StringComparison.Ordinal));
    }

    // ---- Headers sent by hand ----

    [Theory]
    [InlineData(Flavor.AotFork, "v1")]
    [InlineData(Flavor.AotSpawn, "v1")]
    [InlineData(Flavor.AotFork, "v2")]
    [InlineData(Flavor.AotSpawn, "v2")]
    public async Task A_header_split_byte_by_byte_is_read(Flavor flavor, string version)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", version, "--proxy-timeout", "60");
        byte[] header = version == "v1" ? V1("192.0.2.1", "192.0.2.2", 5000, 6000) : V2Inet("192.0.2.1", "192.0.2.2", 5000, 6000);
        using Socket client = EchoClient.Connect(server.Port);
        client.NoDelay = true;
        foreach (byte b in header)
        {
            // One segment per byte: the next is sent once the server's kernel has acknowledged this one.
            client.Send([b]);
            WaitUntilAcknowledged(client);
        }
        Assert.Equal(s_data, await EchoClient.ExchangeAsync(client, s_data));
        server.WaitForLog("^tcpfork: proxy: 192\\.0\\.2\\.1:5000 via 127\\.0\\.0\\.1:\\d+$");
        server.WaitForLog("^tcpfork: ok \\d+ :192\\.0\\.2\\.2:6000 :192\\.0\\.2\\.1::5000$");
    }

    public static TheoryData<Flavor, string, string> Refusals => new()
    {
        { Flavor.AotFork, "garbage", "no PROXY header" },
        { Flavor.AotSpawn, "garbage", "no PROXY header" },
        { Flavor.AotFork, "truncated", "closed in the middle of the header" },
        { Flavor.AotSpawn, "truncated", "closed in the middle of the header" },
        { Flavor.AotFork, "nothing", "closed before the header" },
        { Flavor.AotFork, "oversized", "v2 header longer than 528 bytes" },
        { Flavor.AotSpawn, "oversized", "v2 header longer than 528 bytes" },
        { Flavor.AotFork, "silent", "timed out" },
        { Flavor.AotSpawn, "silent", "timed out" },
    };

    /// <summary>Each bad header: one line with the reason, the connection closed (nothing echoed), no child, and the next good one served.</summary>
    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_bad_or_missing_header_is_logged_and_closed_and_the_server_serves_on(Flavor flavor, string kind, string reason)
    {
        // Long enough that a refusal other than the timeout cannot be the timeout's doing.
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "any", "--proxy-timeout", kind == "silent" ? "0.3" : "60");
        using (Socket client = EchoClient.Connect(server.Port))
        {
            int port = ((IPEndPoint)client.LocalEndPoint!).Port;
            byte[] oversized = [.. V2Inet("192.0.2.1", "192.0.2.2", 1, 2)[..14], 0x04, 0x00];
            switch (kind)
            {
                case "garbage": await client.SendAsync("GET / HTTP/1.0\r\n\r\n"u8.ToArray()); break;
                case "truncated": await client.SendAsync(V1("192.0.2.1", "192.0.2.2", 1, 2)[..20]); client.Shutdown(SocketShutdown.Send); break;
                case "nothing": client.Shutdown(SocketShutdown.Send); break;
                case "oversized": await client.SendAsync(oversized); break;
            }
            server.WaitForLog($"^tcpfork: warning: proxy header from 127\\.0\\.0\\.1:{port}: {reason}; closed$");
            Assert.Empty(await EchoClient.DrainAsync(client));
        }
        Assert.DoesNotContain(server.StderrLines, l => l.StartsWith("tcpfork: ok ", StringComparison.Ordinal));
        Assert.Equal(s_data, await EchoOnceWithHeader(server.Port, V1("192.0.2.9", "192.0.2.2", 7, 8)));
    }

    /// <summary>
    /// A flood of bad headers does not flood the log: the first of each reason is written at once, the
    /// rest counted (docs/logging.md, "Repeated warnings"); at exit the counts are written, and they add up.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Bad_headers_by_the_hundred_write_one_warning_and_a_count(Flavor flavor)
    {
        const int Garbage = 200, Strangers = 20;
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v1", "--proxy-from", "127.0.0.1/32", "--proxy-timeout", "60");
        for (int i = 0; i < Garbage; i++)
        {
            using Socket client = EchoClient.Connect(server.Port);
            await client.SendAsync("GET / HTTP/1.0\r\n\r\n"u8.ToArray());
            Assert.Empty(await EchoClient.DrainAsync(client)); // closed by the server: the header was judged
        }
        for (int i = 0; i < Strangers; i++)
        {
            using Socket stranger = ConnectFrom("127.0.0.2", server.Port);
            Assert.Empty(await EchoClient.DrainAsync(stranger));
        }
        Assert.Equal(s_data, await EchoOnceWithHeader(server.Port, V1("192.0.2.9", "192.0.2.2", 7, 8)));
        server.Signal(Native.SIGTERM);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(30)));

        string[] warnings = [.. server.StderrLines.Where(l => l.StartsWith("tcpfork: warning: proxy header", StringComparison.Ordinal))];
        Assert.InRange(warnings.Length, 4, 8); // each reason's first, its count when the cause changed, and maybe a 10 s count on a slow machine
        Assert.Matches("^tcpfork: warning: proxy header from 127\\.0\\.0\\.1:\\d+: no PROXY v1 header; closed$", warnings[0]);
        Assert.Single(warnings, l => l.EndsWith(": not a trusted proxy; closed", StringComparison.Ordinal));
        Assert.Equal(Garbage - 1, Counted(warnings, "no PROXY v1 header"));
        Assert.Equal(Strangers - 1, Counted(warnings, "not a trusted proxy"));
        Assert.Contains(warnings, l => l.StartsWith("tcpfork: warning: proxy header: no PROXY v1 header; repeated ", StringComparison.Ordinal) && l.EndsWith("; the cause changed", StringComparison.Ordinal));
    }

    /// <summary>The sum of the counts written for <paramref name="reason"/>.</summary>
    private static long Counted(string[] warnings, string reason) =>
        warnings.Select(l => System.Text.RegularExpressions.Regex.Match(l, $"^tcpfork: warning: proxy header: {reason}; repeated (\\d+) times in the last [\\d.]+ s"))
            .Where(m => m.Success).Sum(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Only_peers_in_proxy_from_may_send_a_header(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v1", "--proxy-from", "127.0.0.2/32", "--proxy-timeout", "60");
        using (Socket stranger = EchoClient.Connect(server.Port))
        {
            int port = ((IPEndPoint)stranger.LocalEndPoint!).Port;
            await stranger.SendAsync(V1("192.0.2.1", "192.0.2.2", 1, 2));
            server.WaitForLog($"^tcpfork: warning: proxy header from 127\\.0\\.0\\.1:{port}: not a trusted proxy; closed$");
            Assert.Empty(await EchoClient.DrainAsync(stranger));
        }
        using Socket proxy = ConnectFrom("127.0.0.2", server.Port);
        await proxy.SendAsync(V1("192.0.2.1", "192.0.2.2", 1, 2));
        Assert.Equal(s_data, await EchoClient.ExchangeAsync(proxy, s_data));
        server.WaitForLog("^tcpfork: proxy: 192\\.0\\.2\\.1:1 via 127\\.0\\.0\\.2:\\d+$");
    }

    /// <summary>A v2 LOCAL header (a proxy's health check) is consumed, and the connection keeps its own addresses.</summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task A_v2_LOCAL_header_keeps_the_connections_own_addresses(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v2", "--proxy-timeout", "60");
        using Socket client = EchoClient.Connect(server.Port);
        int port = ((IPEndPoint)client.LocalEndPoint!).Port;
        // LOCAL (0x20), family UNSPEC, and a 3-byte TLV block the spec says to skip unread.
        byte[] local = [.. s_v2Signature, 0x20, 0x00, 0x00, 0x03, 0xEE, 0x00, 0x00];
        await client.SendAsync(local);
        Assert.Equal(s_data, await EchoClient.ExchangeAsync(client, s_data));
        server.WaitForLog($"^tcpfork: ok \\d+ :127\\.0\\.0\\.1:{server.Port} :127\\.0\\.0\\.1::{port}$");
        Assert.DoesNotContain(server.StderrLines, l => l.StartsWith("tcpfork: proxy: ", StringComparison.Ordinal));
    }

    /// <summary>
    /// A connection waiting for its header holds a child slot: with --max-connections 1 the listener leaves
    /// the parent's epoll set (read from /proc: no polling while full), the next client waits in the
    /// backlog, and is served once the first gives up.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task A_waiting_header_counts_toward_max_connections_and_the_listener_is_not_polled_meanwhile(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v1", "--max-connections", "1", "--proxy-timeout", "60");
        using Socket first = EchoClient.Connect(server.Port);
        int firstPort = ((IPEndPoint)first.LocalEndPoint!).Port;
        await first.SendAsync("PROXY TCP4 "u8.ToArray());
        WaitForEpollSet(server, listenerPolled: false, connections: 1);

        using Socket second = EchoClient.Connect(server.Port);
        await second.SendAsync(V1("192.0.2.1", "192.0.2.2", 1, 2));
        Task<byte[]> echoed = EchoClient.ExchangeAsync(second, s_data);
        Assert.Equal((false, 1), EpollSet(server.Pid, server.Port)); // still: the second waits in the backlog, unaccepted
        Assert.False(echoed.IsCompleted);

        first.Shutdown(SocketShutdown.Send);
        server.WaitForLog($"^tcpfork: warning: proxy header from 127\\.0\\.0\\.1:{firstPort}: closed in the middle of the header; closed$");
        Assert.Equal(s_data, await echoed);
        server.WaitForLog("^tcpfork: end ");
        WaitForEpollSet(server, listenerPolled: true, connections: 0);
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task At_a_stop_a_connection_still_waiting_for_its_header_is_closed(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--proxy-protocol", "any", "--proxy-timeout", "60");
        using Socket waiting = EchoClient.Connect(server.Port);
        int port = ((IPEndPoint)waiting.LocalEndPoint!).Port;
        await waiting.SendAsync("PROXY TCP4 192.0.2.1"u8.ToArray());
        WaitForEpollSet(server, listenerPolled: true, connections: 1);
        server.Signal(Native.SIGTERM);
        server.WaitForLog($"^tcpfork: warning: proxy header from 127\\.0\\.0\\.1:{port}: server stopping; closed$");
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Empty(await EchoClient.DrainAsync(waiting));
    }

    // ---- Helpers ----

    /// <summary>
    /// What the parent's epoll watches, from /proc/PID/fdinfo: whether the listener on <paramref name="port"/>
    /// is in the set, and how many other sockets (connections waiting for their header) are.
    /// </summary>
    private static (bool ListenerPolled, int Connections) EpollSet(int pid, int port)
    {
        string listener = $"socket:[{Native.ListeningInode(port)}]";
        string fds = $"/proc/{pid}/fd";
        string epoll = Directory.GetFiles(fds).Single(f => new FileInfo(f).LinkTarget == "anon_inode:[eventpoll]");
        (bool polled, int connections) = (false, 0);
        foreach (string line in File.ReadLines($"/proc/{pid}/fdinfo/{Path.GetFileName(epoll)}").Where(l => l.StartsWith("tfd:", StringComparison.Ordinal)))
        {
            string target = new FileInfo(Path.Combine(fds, line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1])).LinkTarget ?? "";
            polled |= target == listener;
            connections += target.StartsWith("socket:", StringComparison.Ordinal) && target != listener ? 1 : 0;
        }
        return (polled, connections);
    }

    /// <summary>Until the parent's epoll set is as given (it changes within a loop turn of the event that changes it), within 10 s.</summary>
    private static void WaitForEpollSet(ServerProcess server, bool listenerPolled, int connections) =>
        Poll.Until(() => EpollSet(server.Pid, server.Port) == (listenerPolled, connections), TimeSpan.FromSeconds(10),
            () => $"epoll set {EpollSet(server.Pid, server.Port)}, expected {(listenerPolled, connections)}");

    internal static byte[] V1(string source, string destination, int sourcePort, int destinationPort) =>
        Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"PROXY TCP4 {source} {destination} {sourcePort} {destinationPort}\r\n"));

    private static readonly byte[] s_v2Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    private static byte[] V2Inet(string source, string destination, int sourcePort, int destinationPort)
    {
        byte[] h = [.. s_v2Signature, 0x21, 0x11, 0x00, 0x0C, .. IPAddress.Parse(source).GetAddressBytes(), .. IPAddress.Parse(destination).GetAddressBytes(), 0, 0, 0, 0];
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(24), (ushort)sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(26), (ushort)destinationPort);
        return h;
    }

    /// <summary>One echo exchange that starts with <paramref name="header"/> (the echo sends back only what follows it).</summary>
    internal static async Task<byte[]> EchoOnceWithHeader(int port, byte[] header)
    {
        using Socket s = EchoClient.Connect(port);
        await s.SendAsync(header);
        return await EchoClient.ExchangeAsync(s, s_data);
    }

    internal static Socket ConnectFrom(string source, int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            s.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
            s.Connect(new IPEndPoint(IPAddress.Loopback, port));
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>Until the peer's kernel has acknowledged every byte sent (SIOCOUTQ 0), within 5 s.</summary>
    internal static void WaitUntilAcknowledged(Socket socket) =>
        Poll.Until(() => Native.UnacknowledgedBytes(socket) == 0, TimeSpan.FromSeconds(5), () => "the server's kernel did not acknowledge a byte within 5 s");
}
