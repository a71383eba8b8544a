using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>The parent's policies, in every mode: per-IP limit, allow/deny, rules files, rate, timeouts.</summary>
public class PolicyTests
{

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Over_max_per_ip_a_client_gets_the_message_and_is_closed(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--max-per-ip", "1", "--max-per-ip-message", "421 too many connections");
        using Socket first = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(first, "1"u8.ToArray());
        using Socket second = EchoClient.Connect(server.Port);
        Assert.Equal("421 too many connections\r\n", Encoding.ASCII.GetString(await EchoClient.DrainAsync(second)));
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
            Assert.Empty(await EchoClient.DrainAsync(v6));
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
                Assert.Empty(await EchoClient.DrainAsync(s));
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

    /// <summary>One connection from <paramref name="source"/> (a 127.x.y.z address) that sends "x": true if echoed, false if closed unserved.</summary>
    private static async Task<bool> ServedFrom(int port, string source)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(source), 0));
        await s.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
        await s.SendAsync("x"u8.ToArray());
        s.Shutdown(SocketShutdown.Send);
        return (await EchoClient.DrainAsync(s)).Length > 0;
    }

    [Fact]
    public async Task Over_the_rate_a_connection_is_refused_and_logged_but_the_service_stays_up()
    {
        // 3 per 10 minutes: no token comes back while the test runs, however slowly this machine goes.
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--rate", "3/600");
        for (int i = 0; i < 3; i++)
        {
            Assert.True(await ServedFrom(server.Port, "127.0.0.1"));
        }
        Assert.False(await ServedFrom(server.Port, "127.0.0.1"));
        server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+ rate$");
        Assert.True(await ServedFrom(server.Port, "127.0.0.2")); // the service is up for everyone else
        Assert.False(await ServedFrom(server.Port, "127.0.0.1"));
    }

    [Fact]
    public async Task A_client_over_the_rate_is_served_again_once_its_bucket_has_refilled_even_retrying_at_once()
    {
        // 1 per 0.2 s, refilled exactly: a client retrying as fast as the server answers still regains its
        // token 0.2 s after it took it, never sooner.
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--rate", "1/0.2");
        var clock = System.Diagnostics.Stopwatch.StartNew(); // started before the server takes the token
        Assert.True(await ServedFrom(server.Port, "127.0.0.1"));
        int refused = 0;
        bool served = false;
        while (!served && refused < 100_000 && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            served = await ServedFrom(server.Port, "127.0.0.1"); // each try waits for the server's answer
            refused += served ? 0 : 1;
        }
        TimeSpan elapsed = clock.Elapsed;
        Assert.True(served, $"still refused after {refused} tries in {elapsed.TotalSeconds:0.0} s");
        // The server's clock ticks in jiffies (Environment.TickCount64): allow one coarse tick.
        Assert.True(elapsed >= TimeSpan.FromMilliseconds(190), $"served again after {elapsed.TotalMilliseconds} ms");
        if (refused > 0)
        {
            server.WaitForLogCount(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+ rate$", refused);
        }
        Assert.DoesNotContain(server.StderrLines, l => l.StartsWith("tcpfork: deny ", StringComparison.Ordinal) && !l.EndsWith(" rate", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_per_IP_table_makes_room_for_new_clients_when_it_fills()
    {
        // --max-connections 1 sizes the per-IP table at 64 slots; 80 source addresses overflow it unless
        // the parent evicts idle peers (PeerTable). 5 per 10 minutes: no token comes back during the test.
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--max-connections", "1", "--rate", "5/600");
        for (int i = 1; i <= 80; i++)
        {
            Assert.True(await ServedFrom(server.Port, $"127.0.{1 + (i / 41)}.{i}"), $"client {i} refused");
        }

        // The table still works for a newcomer (a full table would fail open and never refuse):
        // six connections from one new address, over its 5.
        bool[] served = new bool[6];
        for (int i = 0; i < served.Length; i++)
        {
            served[i] = await ServedFrom(server.Port, "127.0.3.1");
        }
        Assert.Equal([true, true, true, true, true, false], served);

        int from = server.LogCount;
        server.Signal(Native.SIGHUP);
        string stats = server.WaitForLog("^tcpfork: stats: ", from: from);
        // 81 addresses in 64 slots: at least 17 evictions, and no client refused for want of room.
        Match m = Regex.Match(stats, @" peers-evicted (\d+) peers-refused (\d+)$");
        Assert.True(m.Success, stats);
        Assert.True(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) >= 17, stats);
        Assert.Equal("0", m.Groups[2].Value);
        Assert.False(server.HasExited);
        Assert.DoesNotContain(server.StderrLines, l => l.Contains(" warning: ", StringComparison.Ordinal)); // no "per-IP table" warning
    }

    [Fact]
    public async Task Rate_and_max_per_ip_still_hold_after_more_source_addresses_than_the_table_has_slots()
    {
        // --max-connections 4 sizes the per-IP table at its minimum; 300 source addresses inside one rate
        // window used to fill it, and from then on every new address passed --rate and --max-per-ip.
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--max-connections", "4", "--rate", "1/60", "--max-per-ip", "1");
        for (int i = 0; i < 300; i++)
        {
            Assert.True(await ServedFrom(server.Port, $"127.0.{10 + (i / 200)}.{1 + (i % 200)}"));
        }
        // A new address: one connection held open, a second at once is over --max-per-ip and over --rate.
        using var held = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        held.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("127.0.20.1"), 0));
        await held.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port));
        Assert.Equal("h"u8.ToArray(), await EchoClient.RoundTripAsync(held, "h"u8.ToArray()));
        Assert.False(await ServedFrom(server.Port, "127.0.20.1"));
        server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.20\.1::\d+ max-per-ip$");
        int from = server.LogCount;
        await held.SendAsync("x"u8.ToArray());
        held.Shutdown(SocketShutdown.Send);
        Assert.Equal("x"u8.ToArray(), await EchoClient.DrainAsync(held));
        server.WaitForLog(@"^tcpfork: status: 0/4$", from: from);
        // With the held connection gone, the address is still over its rate.
        Assert.False(await ServedFrom(server.Port, "127.0.20.1"));
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
            Assert.Empty(await EchoClient.DrainAsync(v6));
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
            Assert.Empty(await EchoClient.DrainAsync(v4));
            server.WaitForLog(@"^tcpfork: deny 0 :127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+ rule$");
        }
        // A rule written in the mapped range matches IPv4 clients.
        using (ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--deny", "::ffff:127.0.0.0/104"))
        {
            using Socket v4 = EchoClient.Connect(server.Port);
            await v4.SendAsync("x"u8.ToArray());
            Assert.Empty(await EchoClient.DrainAsync(v4));
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task An_idle_timeout_ends_a_silent_client_but_not_a_busy_one(Flavor flavor)
    {
        // The busy client talks every 0.1 s: a pause of 2 s (the timeout) would take a machine stalled for that long.
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--idle-timeout", "2");
        using Socket silent = EchoClient.Connect(server.Port);
        using Socket busy = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(silent, "s"u8.ToArray());
        var started = DateTime.UtcNow;
        Task<byte[]> silentEnd = EchoClient.DrainAsync(silent);
        while (!silentEnd.IsCompleted && DateTime.UtcNow - started < TimeSpan.FromSeconds(10))
        {
            await EchoClient.RoundTripAsync(busy, "b"u8.ToArray());
            // The busy client talks again after 0.1 s, unless the silent one's EOF comes first.
            await Task.WhenAny(silentEnd, Task.Delay(100));
        }
        Assert.Empty(await silentEnd);
        server.WaitForLog(@"^tcpfork: timeout: \d+ idle \d+(\.\d)? s; sent SIGTERM$");
        Assert.Equal("still here"u8.ToArray(), await EchoClient.RoundTripAsync(busy, "still here"u8.ToArray()));
    }

    /// <summary>
    /// Slowloris at the connection limit: idle time counts from the handshake, so a client that waited in
    /// the accept queue without sending anything is ended on its first check, not a whole timeout after it
    /// was accepted (which let a flood of idle connections hold every slot round after round); a client that
    /// sent its request while it waited is served.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task A_client_that_waited_in_the_queue_saying_nothing_is_idle_at_once_and_one_that_spoke_is_served(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--max-connections", "1", "--idle-timeout", "3");
        using Socket holder = EchoClient.Connect(server.Port);
        await EchoClient.RoundTripAsync(holder, "a"u8.ToArray()); // served: the one slot is taken
        using Socket silent = EchoClient.Connect(server.Port); // queued, says nothing
        int silentPort = ((System.Net.IPEndPoint)silent.LocalEndPoint!).Port;
        using Socket speaker = EchoClient.Connect(server.Port); // queued behind it, with its request sent
        await speaker.SendAsync("c"u8.ToArray());
        speaker.Shutdown(SocketShutdown.Send);

        string started = server.WaitForLog($@"^tcpfork: pid \d+ from 127\.0\.0\.1:{silentPort}$", TimeSpan.FromSeconds(30));
        var accepted = System.Diagnostics.Stopwatch.StartNew();
        string pid = started.Split(' ')[2];
        server.WaitForLog($@"^tcpfork: timeout: {pid} idle \d+(\.\d)? s; sent SIGTERM$", TimeSpan.FromSeconds(30));
        // Ended at its first check after the accept (every 0.75 s here), where it used to get 3 s more.
        Assert.True(accepted.Elapsed < TimeSpan.FromSeconds(2.5), $"the silent client was ended {accepted.Elapsed.TotalSeconds:0.0} s after its accept");
        Assert.Equal("c"u8.ToArray(), await EchoClient.ReadToEndAsync(speaker, new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token));
        Assert.Empty(await EchoClient.DrainAsync(silent));
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
