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
}
