using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace TcpFork;

/// <summary>
/// One allow or deny rule for a network: <c>10.0.0.0/8</c>, <c>::1</c>, <c>2001:db8::/32</c>. A bare
/// address is a host (/32 or /128). IPv4 is accepted only as a canonical dotted quad (see <see cref="IPText"/>).
/// IPv4 clients are matched as <c>::ffff:a.b.c.d</c>, but only by rules within that mapped range:
/// IPv4 rules and IPv6 rules written inside <c>::ffff:0:0/96</c> (<c>::ffff:10.0.0.0/104</c>). Any other
/// IPv6 rule — <c>::/0</c> included — matches IPv6 clients only, so <c>--deny ::/0</c> leaves IPv4 clients
/// alone and <c>--allow ::/0</c> does not admit them past a later IPv4 rule.
/// <para>
/// Or a rule for unix-socket clients, by the uid of the process that connected (SO_PEERCRED):
/// <c>uid:1000</c>, <c>uid:1000-1999</c>. A uid rule never matches a TCP client and a network rule never
/// matches a unix-socket client; both kinds share one list, first match wins.
/// </para>
/// </summary>
public sealed class AccessRule
{
    private readonly bool _mapped;    // within ::ffff:0:0/96: matches IPv4 clients (and only them)

    private AccessRule(bool allow, UInt128 network, int bits, string text)
    {
        Allow = allow;
        Network = network;
        Bits = bits;
        Text = text;
        _mapped = bits >= 96 && network >> 32 == 0xffff;
    }

    private AccessRule(bool allow, uint uidLow, uint uidHigh, string text)
    {
        Allow = allow;
        IsUid = true;
        UidLow = uidLow;
        UidHigh = uidHigh;
        Bits = -1;
        Text = text;
    }

    /// <summary>True when the 16 bytes are an IPv4 address as <c>::ffff:a.b.c.d</c>.</summary>
    internal static bool IsMapped(ReadOnlySpan<byte> address) =>
        address[..10].IndexOfAnyExcept((byte)0) < 0 && address[10] == 0xff && address[11] == 0xff;

    /// <summary>True for allow, false for deny.</summary>
    public bool Allow { get; }

    /// <summary>The rule as written, e.g. <c>deny 10.0.0.0/8</c>.</summary>
    public string Text { get; }

    /// <summary>The network's 128 bits (IPv4 as <c>::ffff:a.b.c.d</c>), host bits zero.</summary>
    internal UInt128 Network { get; }

    /// <summary>The prefix length over those 128 bits (an IPv4 /8 is 104); -1 for a uid rule.</summary>
    internal int Bits { get; }

    /// <summary>True for a rule on unix-socket clients' uids (<c>uid:N</c>, <c>uid:N-M</c>).</summary>
    internal bool IsUid { get; }

    /// <summary>A uid rule's range, both ends included.</summary>
    internal uint UidLow { get; }

    /// <summary>A uid rule's range, both ends included.</summary>
    internal uint UidHigh { get; }

    private const string UidPrefix = "uid:";

    /// <summary>
    /// Parses a network (<c>ADDRESS[/PREFIX]</c>) or a uid range of unix-socket clients (<c>uid:N</c>,
    /// <c>uid:N-M</c>); throws <see cref="FormatException"/> with the reason.
    /// </summary>
    public static AccessRule Create(bool allow, string cidr)
    {
        ArgumentNullException.ThrowIfNull(cidr);
        string text = cidr.Trim();
        if (text.StartsWith(UidPrefix, StringComparison.Ordinal))
        {
            return CreateUid(allow, text);
        }
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        string addressText = slash < 0 ? text : text[..slash];
        if (!IPText.TryParse(addressText, out IPAddress? address))
        {
            throw new FormatException($"'{cidr}' is not an IP address or network (e.g. 10.0.0.0/8, ::1; IPv4 as four decimal numbers 0-255 without leading zeros)");
        }
        bool v4 = address.AddressFamily == AddressFamily.InterNetwork;
        int max = v4 ? 32 : 128;
        int prefix = max;
        if (slash >= 0 && (!int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > max))
        {
            throw new FormatException($"'{cidr}': the prefix length must be a number from 0 to {max}");
        }
        int bits = v4 ? 96 + prefix : prefix;
        UInt128 network = System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian((v4 ? address.MapToIPv6() : address).GetAddressBytes());
        return new AccessRule(allow, network & RuleIndex.MaskOf(bits), bits, $"{(allow ? "allow" : "deny")} {text}");
    }

    private static AccessRule CreateUid(bool allow, string text)
    {
        ReadOnlySpan<char> range = text.AsSpan(UidPrefix.Length);
        int dash = range.IndexOf('-');
        ReadOnlySpan<char> low = dash < 0 ? range : range[..dash], high = dash < 0 ? range : range[(dash + 1)..];
        if (!uint.TryParse(low, NumberStyles.None, CultureInfo.InvariantCulture, out uint from)
            || !uint.TryParse(high, NumberStyles.None, CultureInfo.InvariantCulture, out uint to) || to < from)
        {
            throw new FormatException($"'{text}': expected uid:N or uid:N-M (decimal user ids, N not above M)");
        }
        return new AccessRule(allow, from, to, $"{(allow ? "allow" : "deny")} {text}");
    }

    /// <summary>Parses a rule line: <c>allow CIDR</c> or <c>deny CIDR</c> (or <c>uid:N[-M]</c> for either).</summary>
    public static AccessRule ParseLine(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        string[] words = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (words.Length != 2 || words[0] is not ("allow" or "deny"))
        {
            throw new FormatException($"expected 'allow NETWORK' or 'deny NETWORK' (or uid:N[-M] for NETWORK), not '{line.Trim()}'");
        }
        return Create(words[0] == "allow", words[1]);
    }

    /// <summary>Reads a rules file: one rule a line, <c>#</c> starts a comment; errors name the file and line (see RulesFile).</summary>
    public static List<AccessRule> ReadFile(string path) => RulesFile.Read(path);

    /// <summary>True when <paramref name="address"/> (16 bytes, IPv4 mapped) is in this rule's network.</summary>
    internal bool Matches(ReadOnlySpan<byte> address) => Matches(System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(address));

    /// <summary>True when <paramref name="address"/> (IPv4 as <c>::ffff:a.b.c.d</c>) is in this rule's network.</summary>
    internal bool Matches(UInt128 address)
    {
        if (IsUid)
        {
            return false; // a TCP client: uid rules are for unix-socket clients only
        }
        if (!_mapped && address >> 32 == 0xffff)
        {
            return false; // an IPv4 client: only rules within ::ffff:0:0/96 apply to it
        }
        return (address & RuleIndex.MaskOf(Bits)) == Network;
    }

    /// <summary>True when this is a uid rule and <paramref name="uid"/> (a unix-socket client's) is in its range.</summary>
    internal bool MatchesUid(uint uid) => IsUid && uid >= UidLow && uid <= UidHigh;

    /// <inheritdoc/>
    public override string ToString() => Text;
}
