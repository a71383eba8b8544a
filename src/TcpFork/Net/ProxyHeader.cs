using System.Buffers.Binary;

namespace TcpFork;

/// <summary>Which PROXY protocol headers a listener accepts (<c>--proxy-protocol v1|v2|any</c>).</summary>
internal enum ProxyProtocolMode
{
    V1,
    V2,
    Any,
}

internal enum ProxyParseStatus
{
    /// <summary>The bytes so far are a valid prefix of a header; read at least up to <c>needed</c> bytes in all.</summary>
    NeedMore,

    /// <summary>Not a header the mode accepts; <c>reason</c> says why. Close the connection.</summary>
    Invalid,

    /// <summary>A whole header; its first <see cref="ProxyHeader.Length"/> bytes are consumed, the rest is the client's data.</summary>
    Done,
}

internal enum ProxyCommand
{
    /// <summary>v2 <c>LOCAL</c>: the proxy's own connection (a health check); use the real endpoints.</summary>
    Local,

    /// <summary>A proxied connection: the addresses are the original client's (unless the family is unspecified).</summary>
    Proxy,
}

internal enum ProxyFamily
{
    /// <summary>v1 <c>UNKNOWN</c>, v2 <c>AF_UNSPEC</c> or <c>LOCAL</c>: no addresses; use the real endpoints.</summary>
    Unspecified,
    Inet,
    Inet6,
    Unix,
}

/// <summary>
/// A parsed PROXY protocol header (haproxy's proxy-protocol.txt, versions 1 and 2). The parser reads a span
/// of the bytes received so far and never allocates, so it can run in the parent per connection.
/// <para>What it accepts:</para>
/// <list type="bullet">
/// <item>v1: <c>PROXY TCP4 src dst sport dport\r\n</c>, <c>PROXY TCP6 …\r\n</c>, <c>PROXY UNKNOWN[ anything]\r\n</c>;
/// at most 107 bytes with the CRLF; single spaces; IPv4 as a canonical dotted quad (no leading zeros, no
/// inet_aton forms, see <see cref="IPText"/>), IPv6 as hex groups with at most one <c>::</c> and an optional
/// trailing dotted quad, no zone; ports decimal 0–65535 without leading zeros.</item>
/// <item>v2: the 12-byte signature, version 2, command LOCAL or PROXY, family UNSPEC/INET/INET6/UNIX over
/// UNSPEC or STREAM transport (DGRAM is refused: tcpfork serves stream connections), the address block at
/// least as long as the family needs (12, 36, 216 bytes), then TLVs, each checked to fit but otherwise
/// skipped (the CRC32C TLV is not verified). The length field may be at most <see cref="MaxV2Payload"/>.
/// For LOCAL the block (family byte, addresses, TLVs) is discarded unchecked, as the spec says, and no
/// addresses are returned; only its length counts.</item>
/// </list>
/// </summary>
internal struct ProxyHeader
{
    /// <summary>Longest v1 line, CRLF included (the spec's 107).</summary>
    public const int MaxV1Length = 107;

    /// <summary>
    /// Largest v2 length field (address block + TLVs) accepted: 512 bytes. Enough for a unix address pair
    /// (216) with haproxy's usual TLVs (ALPN, authority, unique-id up to 128, a short SSL TLV); it bounds
    /// the per-connection buffer whoever reads the header needs to <see cref="MaxLength"/>.
    /// </summary>
    public const int MaxV2Payload = 512;

    /// <summary>The v2 fixed part: signature, version/command, family/protocol, length.</summary>
    public const int V2FixedLength = 16;

    /// <summary>Longest header either version can be: a buffer this long always suffices.</summary>
    public const int MaxLength = V2FixedLength + MaxV2Payload;

    private const int V1MinLength = 15; // "PROXY UNKNOWN\r\n"

    /// <summary>Bytes of the input the header took.</summary>
    public int Length;

    /// <summary>1 or 2.</summary>
    public int Version;

    public ProxyCommand Command;
    public ProxyFamily Family;

    /// <summary>The original client; <c>Length == 0</c> when the family is unspecified.</summary>
    public SockAddr Source;

    /// <summary>The address the client connected to; <c>Length == 0</c> when the family is unspecified.</summary>
    public SockAddr Destination;

    /// <summary>True when the addresses are the original client's (PROXY over INET, INET6 or UNIX).</summary>
    public readonly bool HasAddresses => Command == ProxyCommand.Proxy && Family != ProxyFamily.Unspecified;

    internal static ReadOnlySpan<byte> V2Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    private static ReadOnlySpan<byte> V1Prefix => "PROXY "u8;

    /// <summary>
    /// Parses the start of <paramref name="input"/>. On <see cref="ProxyParseStatus.NeedMore"/>,
    /// <paramref name="needed"/> is the least total input length worth parsing again (more may be needed);
    /// on <see cref="ProxyParseStatus.Invalid"/>, <paramref name="reason"/> is a short constant text.
    /// Reads only inside <paramref name="input"/>, never throws, never allocates.
    /// </summary>
    public static ProxyParseStatus Parse(ReadOnlySpan<byte> input, ProxyProtocolMode mode, out ProxyHeader header, out int needed, out string? reason)
    {
        header = default;
        needed = 0;
        reason = null;
        if (input.IsEmpty)
        {
            needed = 1;
            return ProxyParseStatus.NeedMore;
        }
        bool v1 = input[0] == (byte)'P' && mode != ProxyProtocolMode.V2;
        bool v2 = input[0] == 0x0D && mode != ProxyProtocolMode.V1;
        return v1 ? ParseV1(input, ref header, ref needed, ref reason)
            : v2 ? ParseV2(input, ref header, ref needed, ref reason)
            : Fail(ref reason, mode switch
            {
                ProxyProtocolMode.V1 => "no PROXY v1 header",
                ProxyProtocolMode.V2 => "no PROXY v2 signature",
                _ => "no PROXY header",
            });
    }

    private static ProxyParseStatus Fail(ref string? reason, string why)
    {
        reason = why;
        return ProxyParseStatus.Invalid;
    }

    private static bool PrefixMismatch(ReadOnlySpan<byte> input, ReadOnlySpan<byte> expected)
    {
        int n = Math.Min(input.Length, expected.Length);
        return !input[..n].SequenceEqual(expected[..n]);
    }

    private static ProxyParseStatus ParseV1(ReadOnlySpan<byte> input, ref ProxyHeader header, ref int needed, ref string? reason)
    {
        if (PrefixMismatch(input, V1Prefix))
        {
            return Fail(ref reason, "bad v1 signature");
        }
        ReadOnlySpan<byte> window = input[..Math.Min(input.Length, MaxV1Length)];
        int lf = window.IndexOf((byte)'\n');
        int cr = window.IndexOf((byte)'\r');
        if (lf < 0 && (cr < 0 || cr == window.Length - 1))
        {
            if (input.Length >= MaxV1Length)
            {
                return Fail(ref reason, "v1 line longer than 107 bytes");
            }
            needed = Math.Max(input.Length + 1, V1MinLength);
            return ProxyParseStatus.NeedMore;
        }
        if (cr < 0 || (lf >= 0 && lf != cr + 1) || (lf < 0 && cr >= 0))
        {
            return Fail(ref reason, "v1 line not ended by CRLF");
        }
        ReadOnlySpan<byte> line = window[V1Prefix.Length..cr];
        header.Length = lf + 1;
        header.Version = 1;
        header.Command = ProxyCommand.Proxy;

        ReadOnlySpan<byte> proto = NextField(ref line);
        if (proto.SequenceEqual("UNKNOWN"u8))
        {
            header.Family = ProxyFamily.Unspecified; // the rest of the line is to be ignored
            return ProxyParseStatus.Done;
        }
        bool four = proto.SequenceEqual("TCP4"u8);
        if (!four && !proto.SequenceEqual("TCP6"u8))
        {
            return Fail(ref reason, "v1 protocol not TCP4, TCP6 or UNKNOWN");
        }
        ReadOnlySpan<byte> src = NextField(ref line), dst = NextField(ref line), sport = NextField(ref line);
        ReadOnlySpan<byte> dport = line;
        if (dport.IsEmpty || dport.Contains((byte)' '))
        {
            return Fail(ref reason, "v1 line needs exactly: protocol src dst sport dport");
        }
        if (!TryParsePort(sport, out int sp) || !TryParsePort(dport, out int dp))
        {
            return Fail(ref reason, "v1 port not a decimal 0-65535");
        }
        Span<byte> s = stackalloc byte[16];
        Span<byte> d = stackalloc byte[16];
        if (four)
        {
            if (!TryParseIPv4(src, s) || !TryParseIPv4(dst, d))
            {
                return Fail(ref reason, "v1 TCP4 address not a dotted quad");
            }
            header.Family = ProxyFamily.Inet;
            SetInet(ref header.Source, s[..4], sp);
            SetInet(ref header.Destination, d[..4], dp);
        }
        else
        {
            if (!TryParseIPv6(src, s) || !TryParseIPv6(dst, d))
            {
                return Fail(ref reason, "v1 TCP6 address not an IPv6 address");
            }
            header.Family = ProxyFamily.Inet6;
            SetInet6(ref header.Source, s, sp);
            SetInet6(ref header.Destination, d, dp);
        }
        return ProxyParseStatus.Done;
    }

    /// <summary>The text up to the next single space (consumed); an empty field makes the caller fail later.</summary>
    private static ReadOnlySpan<byte> NextField(ref ReadOnlySpan<byte> line)
    {
        int sp = line.IndexOf((byte)' ');
        if (sp < 0)
        {
            ReadOnlySpan<byte> all = line;
            line = default;
            return all;
        }
        ReadOnlySpan<byte> field = line[..sp];
        line = line[(sp + 1)..];
        return field;
    }

    private static ProxyParseStatus ParseV2(ReadOnlySpan<byte> input, ref ProxyHeader header, ref int needed, ref string? reason)
    {
        if (PrefixMismatch(input, V2Signature))
        {
            return Fail(ref reason, "bad v2 signature");
        }
        if (input.Length > 12 && input[12] >> 4 != 2)
        {
            return Fail(ref reason, "v2 version not 2");
        }
        if (input.Length > 12 && (input[12] & 0xF) > 1)
        {
            return Fail(ref reason, "v2 command not LOCAL or PROXY");
        }
        bool local = input.Length > 12 && (input[12] & 0xF) == 0;
        if (input.Length > 13 && !local)
        {
            int fam = input[13] >> 4, transport = input[13] & 0xF;
            if (fam > 3 || transport > 2 || (fam == 0) != (transport == 0))
            {
                return Fail(ref reason, "v2 unknown family or transport");
            }
            if (transport == 2)
            {
                return Fail(ref reason, "v2 datagram transport on a stream connection");
            }
        }
        if (input.Length < V2FixedLength)
        {
            needed = V2FixedLength;
            return ProxyParseStatus.NeedMore;
        }
        int length = BinaryPrimitives.ReadUInt16BigEndian(input[14..]);
        if (length > MaxV2Payload)
        {
            return Fail(ref reason, "v2 header longer than 528 bytes");
        }
        ProxyFamily family = local ? ProxyFamily.Unspecified : (ProxyFamily)(input[13] >> 4);
        if (local)
        {
            // the spec: the receiver discards the whole block, family included, and uses the real endpoints
            if (input.Length < V2FixedLength + length)
            {
                needed = V2FixedLength + length;
                return ProxyParseStatus.NeedMore;
            }
            header.Length = V2FixedLength + length;
            header.Version = 2;
            header.Command = ProxyCommand.Local;
            return ProxyParseStatus.Done;
        }
        int addressLength = family switch
        {
            ProxyFamily.Inet => 12,
            ProxyFamily.Inet6 => 36,
            ProxyFamily.Unix => 216,
            _ => 0,
        };
        if (length < addressLength)
        {
            return Fail(ref reason, "v2 address block shorter than the family needs");
        }
        if (input.Length < V2FixedLength + length)
        {
            needed = V2FixedLength + length;
            return ProxyParseStatus.NeedMore;
        }
        ReadOnlySpan<byte> block = input.Slice(V2FixedLength, length);
        for (ReadOnlySpan<byte> tlvs = block[addressLength..]; !tlvs.IsEmpty;)
        {
            if (tlvs.Length < 3 || tlvs.Length < 3 + BinaryPrimitives.ReadUInt16BigEndian(tlvs[1..]))
            {
                return Fail(ref reason, "v2 TLV runs past the header");
            }
            tlvs = tlvs[(3 + BinaryPrimitives.ReadUInt16BigEndian(tlvs[1..]))..];
        }
        header.Length = V2FixedLength + length;
        header.Version = 2;
        header.Command = ProxyCommand.Proxy;
        header.Family = family;
        switch (family)
        {
            case ProxyFamily.Inet:
                SetInet(ref header.Source, block[..4], BinaryPrimitives.ReadUInt16BigEndian(block[8..]));
                SetInet(ref header.Destination, block[4..8], BinaryPrimitives.ReadUInt16BigEndian(block[10..]));
                break;
            case ProxyFamily.Inet6:
                SetInet6(ref header.Source, block[..16], BinaryPrimitives.ReadUInt16BigEndian(block[32..]));
                SetInet6(ref header.Destination, block[16..32], BinaryPrimitives.ReadUInt16BigEndian(block[34..]));
                break;
            case ProxyFamily.Unix:
                SetUnix(ref header.Source, block[..108]);
                SetUnix(ref header.Destination, block[108..216]);
                break;
        }
        return ProxyParseStatus.Done;
    }

    private static void SetInet(ref SockAddr a, ReadOnlySpan<byte> ip, int port)
    {
        Span<byte> b = a.Raw;
        BinaryPrimitives.WriteUInt16LittleEndian(b, Interop.AF_INET);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)port);
        ip.CopyTo(b[4..]);
        a.Length = 16;
    }

    private static void SetInet6(ref SockAddr a, ReadOnlySpan<byte> ip, int port)
    {
        Span<byte> b = a.Raw;
        BinaryPrimitives.WriteUInt16LittleEndian(b, Interop.AF_INET6);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)port);
        ip.CopyTo(b[8..]);
        a.Length = 28;
    }

    /// <summary>A 108-byte NUL-padded sun_path; an abstract name (leading NUL) comes out unnamed.</summary>
    private static void SetUnix(ref SockAddr a, ReadOnlySpan<byte> path)
    {
        Span<byte> b = a.Raw;
        BinaryPrimitives.WriteUInt16LittleEndian(b, Interop.AF_UNIX);
        int n = path.IndexOf((byte)0);
        n = n < 0 ? path.Length : n;
        path[..n].CopyTo(b[2..]);
        a.Length = 2 + n + 1;
    }

    /// <summary>Decimal 0–65535, no sign, no leading zeros.</summary>
    private static bool TryParsePort(ReadOnlySpan<byte> text, out int port)
    {
        port = 0;
        if (text.IsEmpty || text.Length > 5 || (text.Length > 1 && text[0] == (byte)'0'))
        {
            return false;
        }
        foreach (byte c in text)
        {
            if (!char.IsAsciiDigit((char)c))
            {
                return false;
            }
            port = (port * 10) + (c - '0');
        }
        return port <= 65535;
    }

    /// <summary>Exactly four decimal numbers 0–255 without leading zeros (as <see cref="IPText.IsDottedQuad"/>), into 4 bytes.</summary>
    private static bool TryParseIPv4(ReadOnlySpan<byte> text, Span<byte> dest)
    {
        int parts = 0, i = 0;
        while (true)
        {
            int start = i, value = 0;
            while (i < text.Length && char.IsAsciiDigit((char)text[i]) && i - start < 3)
            {
                value = (value * 10) + (text[i] - '0');
                i++;
            }
            int digits = i - start;
            if (digits == 0 || value > 255 || (digits > 1 && text[start] == (byte)'0'))
            {
                return false;
            }
            dest[parts++] = (byte)value;
            if (i == text.Length)
            {
                return parts == 4;
            }
            if (text[i] != (byte)'.' || parts == 4)
            {
                return false;
            }
            i++;
        }
    }

    /// <summary>RFC 4291 text: up to 8 hex groups of 1–4 digits, at most one <c>::</c>, an optional trailing dotted quad; no zone.</summary>
    private static bool TryParseIPv6(ReadOnlySpan<byte> text, Span<byte> dest)
    {
        Span<byte> groups = stackalloc byte[16];
        int count = 0, gap = -1, i = 0; // count is in 16-bit groups
        if (text.StartsWith("::"u8))
        {
            gap = 0;
            i = 2;
        }
        while (i < text.Length)
        {
            int start = i, value = 0;
            while (i < text.Length && i - start < 4 && char.IsAsciiHexDigit((char)text[i]))
            {
                value = (value << 4) | HexValue(text[i]);
                i++;
            }
            if (i == start)
            {
                return false;
            }
            if (i < text.Length && text[i] == (byte)'.')
            {
                if (count > 6 || !TryParseIPv4(text[start..], groups[(2 * count)..]))
                {
                    return false;
                }
                count += 2;
                break;
            }
            if (count == 8)
            {
                return false;
            }
            BinaryPrimitives.WriteUInt16BigEndian(groups[(2 * count)..], (ushort)value);
            count++;
            if (i == text.Length)
            {
                break;
            }
            if (text[i] != (byte)':')
            {
                return false;
            }
            i++;
            if (i < text.Length && text[i] == (byte)':')
            {
                if (gap >= 0)
                {
                    return false;
                }
                gap = count;
                i++;
            }
            else if (i == text.Length)
            {
                return false; // a trailing single colon
            }
        }
        if (gap < 0 ? count != 8 : count > 7)
        {
            return false;
        }
        dest[..16].Clear();
        if (gap < 0)
        {
            groups.CopyTo(dest);
            return true;
        }
        groups[..(2 * gap)].CopyTo(dest);
        int tail = count - gap;
        groups.Slice(2 * gap, 2 * tail).CopyTo(dest[(16 - (2 * tail))..]);
        return true;
    }

    private static int HexValue(byte c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
