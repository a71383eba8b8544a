using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TcpFork.Tests;

/// <summary>
/// Unix-socket clients are judged by their uid (SO_PEERCRED): uid rules, --max-per-ip and --rate per uid;
/// --idle-timeout, which needs TCP_INFO, is refused with a unix listener. The tests run as root (uid 0).
/// </summary>
public class UnixPeerTests
{
    private static string SocketPath() => Path.Combine(Path.GetTempPath(), $"tcpfork-{Guid.NewGuid():N}.sock");


    private static SockAddr UnixPeer(uint uid)
    {
        SockAddr a = SockAddr.FromUnixPath("/tmp/client.sock");
        a.Uid = uid;
        return a;
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task A_uid_rule_refuses_a_unix_client_and_leaves_TCP_clients_alone(Flavor flavor)
    {
        Assert.True(Environment.IsPrivilegedProcess, "the test expects to run as root (uid 0)");
        string path = SocketPath();
        (string exe, string[] mode) = Binaries.For(flavor);
        using ServerProcess server = ServerProcess.Start(exe, ["echo", .. mode, "-v", "--listen", "unix:" + path, "--listen", "127.0.0.1:0", "--deny", "uid:0"], listeners: 1);
        using (Socket unix = EchoClient.ConnectUnix(path))
        {
            try
            {
                await unix.SendAsync("x"u8.ToArray());
                Assert.Empty(await EchoClient.DrainAsync(unix));
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.Shutdown or SocketError.ConnectionReset)
            {
                // Refused before our byte went out: a unix socket's peer already closed answers EPIPE.
            }
        }
        server.WaitForLog(@"^tcpfork: deny 0 .* rule$");
        Assert.Equal("tcp"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "tcp"u8.ToArray()));
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Max_per_ip_counts_unix_clients_per_uid(Flavor flavor)
    {
        string path = SocketPath();
        using ServerProcess server = ServerProcess.StartUnixEcho(flavor, path, "--max-per-ip", "1", "--max-per-ip-message", "421 one per user");
        using Socket first = EchoClient.ConnectUnix(path);
        Assert.Equal("1"u8.ToArray(), await EchoClient.RoundTripAsync(first, "1"u8.ToArray()));
        using (Socket second = EchoClient.ConnectUnix(path))
        {
            Assert.Equal("421 one per user\r\n", Encoding.ASCII.GetString(await EchoClient.DrainAsync(second)));
        }
        server.WaitForLog(@"^tcpfork: deny 0 .* max-per-ip$");
        Assert.Equal("A"u8.ToArray(), await EchoClient.ExchangeAsync(first, "A"u8.ToArray()));
        server.WaitForLog(@"^tcpfork: status: 0/1000$");
        using Socket third = EchoClient.ConnectUnix(path); // the first has ended: room again
        Assert.Equal("3"u8.ToArray(), await EchoClient.ExchangeAsync(third, "3"u8.ToArray()));
    }

    [Fact]
    public void The_library_refuses_an_idle_timeout_with_a_unix_listener_naming_the_option()
    {
        var options = new TcpForkServerOptions { IdleTimeout = TimeSpan.FromSeconds(5) };
        options.Validate();
        options.Listen.Add(ListenAddress.Parse("unix:/tmp/tcpfork-never-bound.sock"));
        ArgumentException e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Equal(nameof(TcpForkServerOptions.IdleTimeout), e.ParamName);
        Assert.Contains("TcpForkServerOptions.IdleTimeout cannot be used with a unix-socket listener", e.Message);
    }

    [Fact]
    public void Uid_rules_judge_unix_clients_only_and_network_rules_TCP_clients_only_first_match_wins()
    {
        using var memory = new ParentMemory();
        var policy = new AccessPolicy(new TcpForkServerOptions(), [
            AccessRule.Create(true, "uid:1000"),
            AccessRule.Create(false, "uid:500-2000"),
            AccessRule.Create(false, "0.0.0.0/0"),
            AccessRule.Create(false, "::/0"),
        ], memory);
        Assert.Equal(Verdict.Allow, policy.Admit(UnixPeer(1000), 0, out _));
        Assert.Equal(Verdict.DenyRule, policy.Admit(UnixPeer(1500), 0, out _));
        Assert.Equal("deny uid:500-2000", policy.LastRule?.Text);
        Assert.Equal(Verdict.Allow, policy.Admit(UnixPeer(0), 0, out _));       // no IP rule matches a unix client
        Assert.Equal(Verdict.Allow, policy.Admit(UnixPeer(4000), 0, out _));
        Assert.Equal(Verdict.DenyRule, policy.Admit(SockAddr.FromIP(IPAddress.Loopback, 1), 0, out _));
        Assert.Equal("deny 0.0.0.0/0", policy.LastRule?.Text);

        policy.ReplaceRules([AccessRule.Create(false, "uid:0-4294967295")]);
        Assert.Equal(Verdict.Allow, policy.Admit(SockAddr.FromIP(IPAddress.Loopback, 1), 0, out _)); // no uid rule matches a TCP client
        Assert.Equal(Verdict.DenyRule, policy.Admit(UnixPeer(0), 0, out _));
        Assert.False(AccessRule.Create(false, "uid:0").Matches(new byte[16]));
    }

    [Fact]
    public void Max_per_ip_and_rate_count_unix_clients_per_uid_apart_from_every_IP()
    {
        using var memory = new ParentMemory();
        var policy = new AccessPolicy(new TcpForkServerOptions { MaxPerIp = 1, Rate = new RateLimit(2, TimeSpan.FromSeconds(60)), Ipv6Prefix = 0 }, [], memory);
        Assert.Equal(Verdict.Allow, policy.Admit(UnixPeer(7), 0, out _));
        policy.Started(UnixPeer(7), 0);
        Assert.Equal(Verdict.DenyPerIp, policy.Admit(UnixPeer(7), 1, out _));
        Assert.Equal(Verdict.Allow, policy.Admit(UnixPeer(8), 2, out _));                           // another user
        Assert.Equal(Verdict.Allow, policy.Admit(SockAddr.FromIP(IPAddress.Parse("::7"), 1), 3, out _)); // IPv6 all under ::/0
        Assert.Equal(Verdict.Allow, policy.Admit(SockAddr.FromIP(IPAddress.Parse("0.0.0.7"), 1), 4, out _));
        policy.Ended(UnixPeer(7));
        Assert.Equal(Verdict.Allow, policy.Admit(UnixPeer(7), 5, out _));
        Assert.Equal(Verdict.DenyRate, policy.Admit(UnixPeer(7), 6, out _));                        // its third in the window
        Assert.NotEqual(PeerTable.UidKey(7), PeerTable.UidKey(8));
        Assert.Equal(0xff, (byte)(PeerTable.UidKey(7) >> 120)); // multicast: never a TCP client's source
    }

    [Theory]
    [InlineData("uid:0", 0u, 0u)]
    [InlineData("uid:1000-1999", 1000u, 1999u)]
    [InlineData(" uid:4294967295 ", 4294967295u, 4294967295u)]
    public void A_uid_rule_parses_to_its_range(string text, uint low, uint high)
    {
        AccessRule rule = AccessRule.ParseLine("deny " + text);
        Assert.True(rule.IsUid);
        Assert.True(rule.MatchesUid(low) && rule.MatchesUid(high));
        Assert.False(low > 0 && rule.MatchesUid(low - 1));
        Assert.False(high < uint.MaxValue && rule.MatchesUid(high + 1));
    }

    [Theory]
    [InlineData("uid:")]
    [InlineData("uid:x")]
    [InlineData("uid:5-3")]
    [InlineData("uid:1-")]
    [InlineData("uid:4294967296")]
    [InlineData("uid:+1")]
    public void A_bad_uid_rule_is_refused(string text) =>
        Assert.Contains("expected uid:N or uid:N-M", Assert.Throws<FormatException>(() => AccessRule.Create(false, text)).Message);
}
