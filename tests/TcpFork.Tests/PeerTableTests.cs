using System.Net;

namespace TcpFork.Tests;

/// <summary>The per-IP table and the policy's keys, at the level of the internal types (no server needed).</summary>
public class PeerTableTests
{
    private static UInt128 Key(int i) => ((UInt128)0xffff << 32) | (uint)(0x0a000000 + i); // ::ffff:10.x.y.z

    [Fact]
    public void A_full_table_evicts_idle_peers_and_never_fails_open()
    {
        using var memory = new ParentMemory();
        var table = new PeerTable(1, new RateLimit(1, TimeSpan.FromSeconds(60)), memory);
        UInt128 live = Key(0);
        table.AddConnection(live, 0);
        // Far more distinct peers than the table has slots, all inside one rate window.
        for (int i = 1; i <= 5000; i++)
        {
            Assert.True(table.TryTakeToken(Key(i), i));
        }
        // A newcomer still gets a bucket of its own: one connection, then refused for the rest of the minute.
        UInt128 newcomer = Key(100_000);
        Assert.True(table.TryTakeToken(newcomer, 6000));
        Assert.False(table.TryTakeToken(newcomer, 6001));
        table.AddConnection(newcomer, 6001);
        Assert.Equal(1, table.Connections(newcomer));
        // A peer with a live connection is never evicted.
        Assert.Equal(1, table.Connections(live));
    }

    [Fact]
    public void A_client_retrying_faster_than_the_refill_step_still_regains_tokens()
    {
        using var memory = new ParentMemory();
        var table = new PeerTable(10, new RateLimit(10, TimeSpan.FromSeconds(60)), memory); // one token every 6 s
        UInt128 key = Key(1);
        for (int i = 0; i < 10; i++)
        {
            Assert.True(table.TryTakeToken(key, 0));
        }
        int granted = 0;
        for (long now = 5; now <= 30_000; now += 5) // a retry every 5 ms for 30 s
        {
            if (table.TryTakeToken(key, now))
            {
                granted++;
            }
        }
        Assert.Equal(5, granted);
    }

    [Fact]
    public void A_bucket_full_of_open_connections_refuses_a_newcomer_and_counts_it()
    {
        using var memory = new ParentMemory();
        var table = new PeerTable(1, null, memory);
        int bucket = table.Bucket(Key(0));
        List<UInt128> same = [.. Enumerable.Range(0, 1_000_000).Select(Key).Where(k => table.Bucket(k) == bucket).Take(PeerTable.BucketSize + 1)];
        Assert.Equal(PeerTable.BucketSize + 1, same.Count);
        foreach (UInt128 k in same.Take(PeerTable.BucketSize))
        {
            table.AddConnection(k, 0);
        }
        Assert.Equal(-1, table.Slot(same[^1], 1));
        Assert.Equal(1, table.Refused);
        table.RemoveConnection(same[0]);
        Assert.True(table.Slot(same[^1], 2) >= 0); // the idle entry is evicted for it
        Assert.Equal(1, table.Evicted);
        Assert.Equal(0, table.Connections(same[0]));
    }

    [Fact]
    public void The_hash_is_keyed_with_a_secret_per_table()
    {
        using var memory = new ParentMemory();
        var a = new PeerTable(1000, null, memory);
        var b = new PeerTable(1000, null, memory);
        Assert.Contains(Enumerable.Range(0, 64), i => a.Bucket(Key(i)) != b.Bucket(Key(i)));
    }

    private static UInt128 V6(string text) => System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(IPAddress.Parse(text).GetAddressBytes());

    [Fact]
    public void IPv6_clients_are_counted_per_prefix_and_IPv4_clients_per_address()
    {
        using var memory = new ParentMemory();
        var per64 = new PeerTable(10, null, memory, 64);
        Assert.Equal(per64.AccountKey(V6("2001:db8:1:2::1")), per64.AccountKey(V6("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        Assert.NotEqual(per64.AccountKey(V6("2001:db8:1:2::1")), per64.AccountKey(V6("2001:db8:1:3::1")));
        Assert.NotEqual(per64.AccountKey(V6("::ffff:10.0.0.1")), per64.AccountKey(V6("::ffff:10.0.0.2")));
        var per128 = new PeerTable(10, null, memory, 128);
        Assert.NotEqual(per128.AccountKey(V6("2001:db8::1")), per128.AccountKey(V6("2001:db8::2")));
        var per48 = new PeerTable(10, null, memory, 48);
        Assert.Equal(per48.AccountKey(V6("2001:db8:1:2::1")), per48.AccountKey(V6("2001:db8:1:3::1")));
        var all = new PeerTable(10, null, memory, 0);
        Assert.Equal(all.AccountKey(V6("2001:db8::1")), all.AccountKey(V6("fe80::1")));
    }

    [Fact]
    public void Max_per_ip_and_rate_hold_across_a_whole_IPv6_64_by_default()
    {
        using var memory = new ParentMemory();
        var options = new TcpForkServerOptions { MaxPerIp = 2, Rate = new RateLimit(3, TimeSpan.FromSeconds(60)) };
        var policy = new AccessPolicy(options, [], memory);
        SockAddr From(string ip) => SockAddr.FromIP(IPAddress.Parse(ip), 4000);
        Assert.Equal(Verdict.Allow, policy.Admit(From("2001:db8::1"), 0, out _));
        policy.Started(From("2001:db8::1"), 0);
        Assert.Equal(Verdict.Allow, policy.Admit(From("2001:db8::2"), 1, out int same));
        Assert.Equal(2, same);
        policy.Started(From("2001:db8::2"), 1);
        Assert.Equal(Verdict.DenyPerIp, policy.Admit(From("2001:db8::3"), 2, out _));
        policy.Ended(From("2001:db8::1"));
        Assert.Equal(Verdict.Allow, policy.Admit(From("2001:db8:0:0:8000::9"), 3, out _));
        Assert.Equal(Verdict.DenyRate, policy.Admit(From("2001:db8::4"), 4, out _));
        Assert.Equal(Verdict.Allow, policy.Admit(From("2001:db8:0:1::1"), 5, out _)); // another /64
    }
}
