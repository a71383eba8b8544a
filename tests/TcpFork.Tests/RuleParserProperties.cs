using System.Net;
using CsCheck;

namespace TcpFork.Tests;

/// <summary>Property-based tests of the CIDR and rules parser.</summary>
public class RuleParserProperties
{
    private static bool InNetwork(byte[] network, int prefix, byte[] address)
    {
        for (int bit = 0; bit < prefix; bit++)
        {
            int mask = 0x80 >> (bit % 8);
            if ((network[bit / 8] & mask) != (address[bit / 8] & mask))
            {
                return false;
            }
        }
        return true;
    }

    private static byte[] Key(byte[] address) =>
        address.Length == 4 ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, .. address] : address;

    [Fact]
    public void A_parsed_network_contains_exactly_the_addresses_that_share_its_prefix()
    {
        Gen.Select(Gen.Bool, Gen.Byte.Array[16], Gen.Byte.Array[16], Gen.Int[0, 128]).Sample((v4, netBytes, probeBytes, p) =>
        {
            byte[] network = v4 ? netBytes[..4] : netBytes;
            int prefix = v4 ? p % 33 : p;
            byte[] probe = v4 ? probeBytes[..4] : probeBytes;
            if (probeBytes[0] % 2 == 0) // half the probes share the network's prefix
            {
                for (int bit = 0; bit < prefix; bit++)
                {
                    int mask = 0x80 >> (bit % 8);
                    probe[bit / 8] = (byte)((probe[bit / 8] & ~mask) | (network[bit / 8] & mask));
                }
            }
            AccessRule rule = AccessRule.Create(allow: true, $"{new IPAddress(network)}/{prefix}");
            Assert.Equal(InNetwork(network, prefix, probe), rule.Matches(Key(probe)));
        }, iter: 20_000);
    }

    [Fact]
    public void Any_text_either_parses_or_is_refused_with_a_FormatException()
    {
        Gen.String[Gen.Char["0123456789abcdef.:/% x-"], 0, 40].Sample(text =>
        {
            try
            {
                AccessRule.ParseLine("deny " + text);
            }
            catch (FormatException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
            }
        }, iter: 20_000);
    }

    [Fact]
    public void A_rules_file_round_trips_and_its_comments_and_blank_lines_are_ignored()
    {
        Gen.Select(Gen.Bool, Gen.Byte.Array[4], Gen.Int[0, 32]).List[0, 20].Sample(rules =>
        {
            string file = Path.GetTempFileName();
            try
            {
                File.WriteAllLines(file, rules.SelectMany(r => new[] { "  # comment", "", $"{(r.Item1 ? "allow" : "deny")} {new IPAddress(r.Item2)}/{r.Item3} # why" }));
                List<AccessRule> read = AccessRule.ReadFile(file);
                Assert.Equal(rules.Count, read.Count);
                Assert.Equal(rules.Select(r => r.Item1), read.Select(r => r.Allow));
            }
            finally
            {
                File.Delete(file);
            }
        }, iter: 200);
    }

    [Fact]
    public void IPv4_is_accepted_only_as_a_canonical_dotted_quad()
    {
        // Each part rendered canonically, or (at least one part) as inet_aton would also read it:
        // a leading zero (octal), hex, or the quad cut short.
        Gen.Select(Gen.Byte.Array[4], Gen.Int[0, 3], Gen.Int[0, 4]).Sample((bytes, part, form) =>
        {
            string[] parts = [.. bytes.Select(b => b.ToString(System.Globalization.CultureInfo.InvariantCulture))];
            string text = form switch
            {
                0 => string.Join('.', parts),
                1 => string.Join('.', parts.Select((p, i) => i == part ? "0" + p : p)),
                2 => string.Join('.', parts.Select((p, i) => i == part ? $"0x{bytes[i]:x}" : p)),
                3 => string.Join('.', parts.Take(1 + (part % 3))),
                _ => $"{string.Join('.', parts)}.{bytes[part]}",
            };
            bool canonical = form == 0;
            Assert.Equal(canonical, IPText.TryParse(text, out IPAddress? a));
            if (canonical)
            {
                Assert.Equal(bytes, a!.GetAddressBytes());
                AccessRule.Create(allow: false, text + "/" + part * 8);
            }
            else
            {
                Assert.Throws<FormatException>(() => AccessRule.Create(allow: false, text));
                Assert.Throws<FormatException>(() => ListenAddress.Parse(text + ":80"));
            }
        }, iter: 20_000);
    }

    [Fact]
    public void IPv4_clients_are_matched_only_by_rules_in_the_mapped_range()
    {
        Gen.Select(Gen.Byte.Array[16], Gen.Int[0, 128], Gen.Byte.Array[4]).Sample((netBytes, prefix, client) =>
        {
            if (netBytes[0] % 2 == 0) // half the networks in ::ffff:0:0/96, written that way
            {
                netBytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, .. netBytes[12..]];
            }
            AccessRule rule = AccessRule.Create(allow: true, $"{new IPAddress(netBytes)}/{prefix}");
            bool inMappedRange = prefix >= 96 && AccessRule.IsMapped(netBytes);
            bool expected = inMappedRange && InNetwork(netBytes, prefix, Key(client));
            Assert.Equal(expected, rule.Matches(Key(client)));
        }, iter: 20_000);
        Assert.False(AccessRule.Create(false, "::/0").Matches(Key([127, 0, 0, 1])));
        Assert.True(AccessRule.Create(false, "::/0").Matches(Key(IPAddress.IPv6Loopback.GetAddressBytes())));
        Assert.True(AccessRule.Create(false, "::ffff:0:0/96").Matches(Key([127, 0, 0, 1])));
    }
}
