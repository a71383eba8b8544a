using System.Buffers.Binary;
using System.Net;
using CsCheck;

namespace TcpFork.Tests;

/// <summary>The rule index gives the answer of first-match over the list, for any rules and any client (TCP or, by uid, unix).</summary>
public class RuleIndexTests
{
    /// <summary>The definition: the first rule in the list that matches, or -1.</summary>
    private static int FirstMatch(IReadOnlyList<AccessRule> rules, UInt128 address)
    {
        for (int i = 0; i < rules.Count; i++)
        {
            if (rules[i].Matches(address))
            {
                return i;
            }
        }
        return -1;
    }

    private static UInt128 Key(IPAddress a) =>
        BinaryPrimitives.ReadUInt128BigEndian(a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? a.MapToIPv6().GetAddressBytes() : a.GetAddressBytes());

    /// <summary>A few base addresses per sample, so that rules overlap and nest and probes land in them.</summary>
    private static readonly Gen<IPAddress> s_base = Gen.OneOf(
        Gen.Byte.Array[4].Select(b => new IPAddress(b)),
        Gen.Byte.Array[16].Select(b => new IPAddress(b)),
        Gen.Byte.Array[4].Select(b => new IPAddress(b).MapToIPv6()),   // written in the mapped range
        Gen.Const(IPAddress.IPv6Any));

    /// <summary>An address near <paramref name="a"/>: a few of its bits flipped, anywhere.</summary>
    private static IPAddress Near(IPAddress a, int[] flips)
    {
        byte[] b = a.GetAddressBytes();
        foreach (int bit in flips)
        {
            int at = bit % (b.Length * 8);
            b[at / 8] ^= (byte)(0x80 >> (at % 8));
        }
        return new IPAddress(b);
    }

    private static string Cidr(IPAddress a, int prefix) =>
        $"{a}/{prefix % ((a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128) + 1)}";

    [Fact]
    public void The_index_finds_the_first_matching_rule_of_random_rule_sets()
    {
        Gen<(List<AccessRule> Rules, List<IPAddress> Probes)> sample =
            from bases in s_base.Array[1, 6]
            from rules in Gen.Frequency(
                (9, Gen.Select(Gen.Bool, Gen.Int[0, 5], Gen.Int[0, 128], Gen.Int[0, 127].Array[0, 3])
                    .Select(r => AccessRule.Create(r.Item1, Cidr(Near(bases[r.Item2 % bases.Length], r.Item4), r.Item3)))),
                (1, Gen.Select(Gen.Bool, Gen.UInt[0, 20], Gen.UInt[0, 5]).Select(u => AccessRule.Create(u.Item1, $"uid:{u.Item2}-{u.Item2 + u.Item3}")))).List[0, 60]
            from probes in Gen.Select(Gen.Int[0, 5], Gen.Int[0, 127].Array[0, 4], Gen.Bool)
                .Select(p => Near(p.Item3 ? bases[p.Item1 % bases.Length] : IPAddress.Loopback, p.Item2)).List[1, 40]
            select (rules, probes);
        sample.Sample(s =>
        {
            using var memory = new ParentMemory(); // one per sample: samples run on several threads
            using var index = new RuleIndex(s.Rules, memory);
            foreach (IPAddress probe in s.Probes)
            {
                UInt128 key = Key(probe);
                Assert.Equal(FirstMatch(s.Rules, key), index.Find(key));
            }
            for (uint uid = 0; uid < 30; uid++)
            {
                Assert.Equal(s.Rules.FindIndex(r => r.MatchesUid(uid)), index.FindUid(uid));
            }
        }, iter: 5_000);
    }

    [Fact]
    public void An_IPv6_rule_outside_the_mapped_range_never_matches_an_IPv4_client()
    {
        using var memory = new ParentMemory();
        AccessRule[] rules = [AccessRule.Create(false, "::/0"), AccessRule.Create(false, "::/64"), AccessRule.Create(true, "::ffff:10.0.0.0/104"), AccessRule.Create(false, "0.0.0.0/0")];
        using var index = new RuleIndex(rules, memory);
        Assert.Equal(2, index.Find(Key(IPAddress.Parse("10.1.2.3"))));
        Assert.Equal(3, index.Find(Key(IPAddress.Parse("11.1.2.3"))));
        Assert.Equal(0, index.Find(Key(IPAddress.Parse("::1"))));
        Assert.Equal(0, index.Find(Key(IPAddress.Parse("2001:db8::1"))));
        using var none = new RuleIndex([], memory);
        Assert.Equal(-1, none.Find(Key(IPAddress.Parse("10.1.2.3"))));
    }

    [Fact]
    public void A_file_of_100000_rules_loads_and_the_policy_decides_by_its_first_match()
    {
        string file = Path.GetTempFileName();
        try
        {
            var lines = new List<string>(100_000);
            for (int i = 0; lines.Count < 99_998; i++)
            {
                // 10.x.y.z hosts and /24s, and 2001:db8::/48s: none of them holds 127.0.0.1 or 192.0.2.1
                lines.Add((i % 3) switch
                {
                    0 => $"deny 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                    1 => $"allow 10.{(i >> 8) & 255}.{i & 255}.0/24",
                    _ => $"deny 2001:db8:{i & 0xffff:x}::/48",
                });
            }
            lines.Add("allow 127.0.0.1");
            lines.Add("deny 0.0.0.0/0");
            File.WriteAllLines(file, lines);

            List<AccessRule> rules = AccessRule.ReadFile(file);
            Assert.Equal(100_000, rules.Count);
            using var memory = new ParentMemory();
            var policy = new AccessPolicy(new TcpForkServerOptions(), rules, memory);
            static SockAddr From(string ip) => SockAddr.FromIP(IPAddress.Parse(ip), 4000);
            Assert.Equal(Verdict.Allow, policy.Admit(From("127.0.0.1"), 0, out _));
            Assert.Equal(Verdict.DenyRule, policy.Admit(From("192.0.2.1"), 0, out _));
            Assert.Equal("deny 0.0.0.0/0", policy.LastRule?.Text);
            Assert.Equal(Verdict.DenyRule, policy.Admit(From("2001:db8:7:1::1"), 0, out _));
            Assert.Equal("deny 2001:db8:7::/48", policy.LastRule?.Text);
            Assert.Equal(Verdict.Allow, policy.Admit(From("::1"), 0, out _));

            using var index = new RuleIndex(rules, memory);
            var random = new Random(10);
            for (int n = 0; n < 2_000; n++)
            {
                var probe = new IPAddress(random.Next(2) == 0
                    ? [10, (byte)random.Next(3), (byte)random.Next(256), (byte)random.Next(256)]
                    : [0x20, 0x01, 0x0d, 0xb8, (byte)random.Next(256), (byte)random.Next(256), .. new byte[10]]);
                Assert.Equal(FirstMatch(rules, Key(probe)), index.Find(Key(probe)));
            }
            policy.ReplaceRules([AccessRule.Create(false, "127.0.0.1")]);
            Assert.Equal(Verdict.DenyRule, policy.Admit(From("127.0.0.1"), 0, out _));
            Assert.Equal(Verdict.Allow, policy.Admit(From("192.0.2.1"), 0, out _));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
