using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace TcpFork.Tests;

/// <summary>The parent's policies, in every mode: per-IP limit, allow/deny, rules files, rate, timeouts.</summary>
public class PolicyTests
{
    private static async Task<byte[]> Drain(Socket s)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            return await EchoClient.ReadToEndAsync(s, cts.Token);
        }
        catch (SocketException)
        {
            return [];
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Over_max_per_ip_a_client_gets_the_message_and_is_closed(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--max-per-ip", "1", "--max-per-ip-message", "421 too many connections");
        using Socket first = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(first, "1"u8.ToArray());
        using Socket second = EchoClient.Connect(server.Port);
        Assert.Equal("421 too many connections\r\n", Encoding.ASCII.GetString(await Drain(second)));
        server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+ max-per-ip$");
        Assert.Equal("A"u8.ToArray(), await EchoClient.ExchangeAsync(first, "A"u8.ToArray()));
        server.WaitForLog(@"^tcpfork: status: 0/1000$");
        Assert.Equal("3"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "3"u8.ToArray()));
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.JitSpawn)]
    public async Task Deny_and_allow_rules_apply_in_order_over_IPv4_and_IPv6(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor,
            "--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--deny", "::1", "--allow", "127.0.0.1", "--deny", "0.0.0.0/0");
        using (Socket v6 = EchoClient.Connect(server.Ports[1], AddressFamily.InterNetworkV6))
        {
            await v6.SendAsync("x"u8.ToArray());
            Assert.Empty(await Drain(v6));
        }
        server.WaitForLog(@"^tcpfork: deny 0 :::1:\d+ :::1::\d+ rule$");
        Assert.Equal("v4"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Ports[0], "v4"u8.ToArray()));
    }

    [Fact]
    public async Task A_rules_file_is_read_at_start_and_again_on_SIGHUP()
    {
        string file = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(file, "# deny loopback\ndeny 127.0.0.0/8   # everything local\n");
            using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--rules", file);
            using (Socket s = EchoClient.Connect(server.Port))
            {
                Assert.Empty(await Drain(s));
            }
            await File.WriteAllTextAsync(file, "allow 127.0.0.1\ndeny 0.0.0.0/0\n");
            int from = server.LogCount;
            server.Signal(Native.SIGHUP);
            server.WaitForLog(@"^tcpfork: rules: reloaded 2 rules$", from: from);
            Assert.Equal("ok"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "ok"u8.ToArray()));

            await File.WriteAllTextAsync(file, "allow 127.0.0.1\nbogus line\n");
            server.Signal(Native.SIGHUP);
            server.WaitForLog($@"^tcpfork: warning: rules: {System.Text.RegularExpressions.Regex.Escape(file)}:2: .*; keeping the rules in force$");
            Assert.Equal("still"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "still"u8.ToArray()));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("allow 10.0.0.0/8\n\ndeny 10.0.0.0/33\n", 3, "prefix length must be a number from 0 to 32")]
    [InlineData("# ok\npermit 1.2.3.4\n", 2, "expected 'allow NETWORK' or 'deny NETWORK'")]
    [InlineData("deny 1.2.3\n", 1, "'1.2.3' is not an IP address")]
    [InlineData("allow ::1\ndeny 0177.0.0.1\n", 2, "'0177.0.0.1' is not an IP address")]
    [InlineData("deny 0x7f.0.0.1/8\n", 1, "'0x7f.0.0.1/8' is not an IP address")]
    [InlineData("deny 010.0.0.1\n", 1, "'010.0.0.1' is not an IP address")]
    public void A_rules_file_with_an_error_exits_2_naming_file_and_line(string content, int line, string reason)
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, content);
            (int code, _, string stderr) = Run.Command(Binaries.AotBinary, "echo", "--rules", file);
            Assert.Equal(2, code);
            Assert.Contains($"{file}:{line}: ", stderr);
            Assert.Contains(reason, stderr);
            Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Over_the_rate_a_connection_is_refused_and_logged_but_the_service_stays_up()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--rate", "3/1");
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal("r"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "r"u8.ToArray()));
        }
        using (Socket s = EchoClient.Connect(server.Port))
        {
            Assert.Empty(await Drain(s));
        }
        server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+ rate$");
        await Task.Delay(1100); // the bucket refills
        Assert.Equal("again"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "again"u8.ToArray()));
    }

    [Fact]
    public async Task The_per_IP_table_makes_room_for_new_clients_when_it_fills()
    {
        // --max-connections 1 sizes the per-IP table at 64 slots; 80 source addresses overflow it unless
        // the parent evicts idle peers (PeerTable).
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "-q", "--max-connections", "1", "--rate", "5/0.2");
        async Task EchoFrom(string source)
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(source), 0));
            await s.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port));
            Assert.Equal("hi"u8.ToArray(), await EchoClient.ExchangeAsync(s, "hi"u8.ToArray()));
        }
        for (int i = 1; i <= 40; i++)
        {
            await EchoFrom($"127.0.1.{i}");
        }
        await Task.Delay(300);
        for (int i = 1; i <= 40; i++)
        {
            await EchoFrom($"127.0.2.{i}");
        }
        Assert.False(server.HasExited);
        Assert.Empty(server.StderrLines);

        // The table still works for a newcomer (a full table would fail open and never refuse):
        // six quick connections from one new address, over its 5 per 0.2 s.
        int refused = 0;
        for (int i = 0; i < 6; i++)
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("127.0.3.1"), 0));
            await s.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port));
            await s.SendAsync("x"u8.ToArray());
            s.Shutdown(SocketShutdown.Send);
            if ((await Drain(s)).Length == 0)
            {
                refused++;
            }
        }
        Assert.Equal(1, refused);
    }

    [Fact]
    public async Task Rate_and_max_per_ip_still_hold_after_more_source_addresses_than_the_table_has_slots()
    {
        // --max-connections 4 sizes the per-IP table at its minimum; 300 source addresses inside one rate
        // window used to fill it, and from then on every new address passed --rate and --max-per-ip.
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--max-connections", "4", "--rate", "1/60", "--max-per-ip", "1");
        async Task<bool> Served(string source, Socket? keep = null)
        {
            Socket s = keep ?? new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (keep is null)
                {
                    s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(source), 0));
                    await s.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port));
                }
                await s.SendAsync("x"u8.ToArray());
                s.Shutdown(SocketShutdown.Send);
                return (await Drain(s)).Length > 0;
            }
            finally
            {
                if (keep is null)
                {
                    s.Dispose();
                }
            }
        }
        for (int i = 0; i < 300; i++)
        {
            Assert.True(await Served($"127.0.{10 + (i / 200)}.{1 + (i % 200)}"));
        }
        // A new address: one connection held open, a second at once is over --max-per-ip and over --rate.
        using var held = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        held.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("127.0.20.1"), 0));
        await held.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port));
        Assert.Equal("h"u8.ToArray(), await EchoClient.RoundTripAsync(held, "h"u8.ToArray()));
        Assert.False(await Served("127.0.20.1"));
        server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.20\.1::\d+ max-per-ip$");
        int from = server.LogCount;
        Assert.True(await Served("", held));
        server.WaitForLog(@"^tcpfork: status: 0/4$", from: from);
        // With the held connection gone, the address is still over its rate.
        Assert.False(await Served("127.0.20.1"));
        server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.20\.1::\d+ rate$");
    }

    [Fact]
    public async Task An_IPv6_rule_outside_the_mapped_range_never_matches_IPv4_clients()
    {
        // --deny ::/0 refuses IPv6 clients only.
        using (ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--deny", "::/0"))
        {
            Assert.Equal("v4"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Ports[0], "v4"u8.ToArray()));
            using Socket v6 = EchoClient.Connect(server.Ports[1], AddressFamily.InterNetworkV6);
            await v6.SendAsync("x"u8.ToArray());
            Assert.Empty(await Drain(v6));
            server.WaitForLog(@"^tcpfork: deny 0 :::1:\d+ :::1::\d+ rule$");
        }
        // --allow ::/0 admits IPv6 clients only: a later IPv4 deny still applies to IPv4 clients.
        using (ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--allow", "::/0", "--deny", "0.0.0.0/0"))
        {
            using (Socket v6 = EchoClient.Connect(server.Ports[1], AddressFamily.InterNetworkV6))
            {
                Assert.Equal("v6"u8.ToArray(), await EchoClient.RoundTripAsync(v6, "v6"u8.ToArray()));
            }
            using Socket v4 = EchoClient.Connect(server.Ports[0]);
            await v4.SendAsync("x"u8.ToArray());
            Assert.Empty(await Drain(v4));
            server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+ rule$");
        }
        // A rule written in the mapped range matches IPv4 clients.
        using (ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--deny", "::ffff:127.0.0.0/104"))
        {
            using Socket v4 = EchoClient.Connect(server.Port);
            await v4.SendAsync("x"u8.ToArray());
            Assert.Empty(await Drain(v4));
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task An_idle_timeout_ends_a_silent_client_but_not_a_busy_one(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--idle-timeout", "1");
        using Socket silent = EchoClient.Connect(server.Port);
        using Socket busy = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(silent, "s"u8.ToArray());
        var started = DateTime.UtcNow;
        Task<byte[]> silentEnd = Drain(silent);
        while (!silentEnd.IsCompleted && DateTime.UtcNow - started < TimeSpan.FromSeconds(10))
        {
            await EchoClient.RoundTripAsync(busy, "b"u8.ToArray());
            await Task.Delay(200);
        }
        Assert.Empty(await silentEnd);
        server.WaitForLog(@"^tcpfork: timeout: \d+ idle \d+(\.\d)? s; sent SIGTERM$");
        Assert.Equal("still here"u8.ToArray(), await EchoClient.RoundTripAsync(busy, "still here"u8.ToArray()));
    }

    [Fact]
    public async Task Max_lifetime_ends_a_child_that_keeps_talking()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--max-lifetime", "1");
        using Socket s = EchoClient.Connect(server.Port);
        var started = DateTime.UtcNow;
        bool ended = false;
        while (!ended && DateTime.UtcNow - started < TimeSpan.FromSeconds(10))
        {
            try
            {
                await EchoClient.RoundTripAsync(s, "t"u8.ToArray());
                await Task.Delay(100);
            }
            catch (Exception e) when (e is EndOfStreamException or SocketException)
            {
                ended = true;
            }
        }
        Assert.True(ended);
        server.WaitForLog(@"^tcpfork: timeout: \d+ lifetime \d+(\.\d)? s; sent SIGTERM$");
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    [InlineData(Flavor.JitSpawn)]
    public async Task Echo_children_with_a_memory_limit_serve_under_it(Flavor flavor)
    {
        // A managed child's --limit-as caps its GC heap and the address space it adds, not the runtime's reservation.
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--limit-as", "64M");
        byte[] data = RandomNumberGenerator.GetBytes(1 << 20);
        for (int i = 0; i < 3; i++)
        {
            int from = server.LogCount;
            Assert.Equal(data, await EchoClient.EchoOnceAsync(server.Port, data));
            server.WaitForLog(@"^tcpfork: end \d+ status 0$", from: from);
        }
        Assert.DoesNotContain(server.StderrLines, l => l.Contains("error", StringComparison.Ordinal));
    }
}
