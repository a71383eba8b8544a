using System.Buffers.Binary;
using System.Net;
using System.Text;
using CsCheck;

namespace TcpFork.Tests;

/// <summary>The PROXY protocol v1/v2 header parser, against the examples and rules of haproxy's proxy-protocol.txt.</summary>
public class ProxyHeaderTests
{
    private const byte Local = 0x20, Proxy = 0x21;
    private const byte Unspec = 0x00, Tcp4 = 0x11, Tcp6 = 0x21, UnixStream = 0x31;

    // ---- a small test-side writer ----

    private static byte[] V1(string line) => Encoding.ASCII.GetBytes(line);

    private static byte[] V2(byte verCmd, byte famProto, byte[] block, int? lengthField = null)
    {
        var h = new byte[16 + block.Length];
        ProxyHeader.V2Signature.CopyTo(h);
        h[12] = verCmd;
        h[13] = famProto;
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(14), (ushort)(lengthField ?? block.Length));
        block.CopyTo(h, 16);
        return h;
    }

    private static byte[] Inet(IPAddress src, IPAddress dst, int sport, int dport)
    {
        byte[] s = src.GetAddressBytes(), d = dst.GetAddressBytes();
        var b = new byte[(2 * s.Length) + 4];
        s.CopyTo(b, 0);
        d.CopyTo(b, s.Length);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2 * s.Length), (ushort)sport);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan((2 * s.Length) + 2), (ushort)dport);
        return b;
    }

    private static byte[] UnixBlock(string src, string dst)
    {
        var b = new byte[216];
        Encoding.UTF8.GetBytes(src, b.AsSpan(0, 108));
        Encoding.UTF8.GetBytes(dst, b.AsSpan(108, 108));
        return b;
    }

    private static byte[] Tlv(byte type, int length) => [type, (byte)(length >> 8), (byte)length, .. new byte[length]];

    private static ProxyParseStatus Parse(byte[] input, out ProxyHeader h, out int needed, out string? reason, ProxyProtocolMode mode = ProxyProtocolMode.Any) =>
        ProxyHeader.Parse(input, mode, out h, out needed, out reason);

    private static ProxyHeader Done(byte[] input, ProxyProtocolMode mode = ProxyProtocolMode.Any)
    {
        ProxyParseStatus st = Parse(input, out ProxyHeader h, out _, out string? reason, mode);
        Assert.True(st == ProxyParseStatus.Done, $"{st}: {reason}");
        return h;
    }

    private static string Invalid(byte[] input, ProxyProtocolMode mode = ProxyProtocolMode.Any)
    {
        ProxyParseStatus st = Parse(input, out _, out _, out string? reason, mode);
        Assert.Equal(ProxyParseStatus.Invalid, st);
        Assert.False(string.IsNullOrEmpty(reason));
        return reason!;
    }

    private static void AssertSplitsAgree(byte[] header, ProxyProtocolMode mode = ProxyProtocolMode.Any)
    {
        ProxyParseStatus whole = Parse(header, out ProxyHeader full, out _, out string? fullReason, mode);
        Assert.NotEqual(ProxyParseStatus.NeedMore, whole);
        bool invalidSeen = false;
        for (int n = 0; n < header.Length; n++)
        {
            ProxyParseStatus st = Parse(header[..n], out _, out int needed, out _, mode);
            if (st == ProxyParseStatus.NeedMore)
            {
                Assert.False(invalidSeen);
                Assert.InRange(needed, n + 1, header.Length);
                continue;
            }
            // a prefix may already be refused, but only if the whole is refused as well; it is never Done early
            Assert.Equal(ProxyParseStatus.Invalid, st);
            Assert.Equal(ProxyParseStatus.Invalid, whole);
            invalidSeen = true;
        }
        if (whole == ProxyParseStatus.Done)
        {
            ProxyHeader again = Done([.. header, .. "client data"u8], mode);
            Assert.Equal(full.Length, again.Length);
            Assert.Equal(header.Length, full.Length);
            Assert.Equal(full.Source.ToString(), again.Source.ToString());
            Assert.Equal(full.Destination.ToString(), again.Destination.ToString());
        }
        else
        {
            Assert.NotNull(fullReason);
        }
    }

    // ---- v1 ----

    [Fact]
    public void V1_TCP4_from_the_spec()
    {
        byte[] input = V1("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
        ProxyHeader h = Done(input, ProxyProtocolMode.V1);
        Assert.Equal(1, h.Version);
        Assert.Equal(ProxyCommand.Proxy, h.Command);
        Assert.Equal(ProxyFamily.Inet, h.Family);
        Assert.True(h.HasAddresses);
        Assert.Equal("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".Length, h.Length);
        Assert.Equal("192.168.0.1:56324", h.Source.ToString());
        Assert.Equal("192.168.0.11:443", h.Destination.ToString());
    }

    [Fact]
    public void V1_TCP6_with_compressed_and_embedded_IPv4_forms()
    {
        ProxyHeader h = Done(V1("PROXY TCP6 ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".Replace("f...f", "ffff:ffff:ffff:ffff:ffff:ffff", StringComparison.Ordinal)));
        Assert.Equal(ProxyFamily.Inet6, h.Family);
        Assert.Equal("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", h.Source.ToString());
        h = Done(V1("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 1\r\n"));
        Assert.Equal("[2001:db8::1]:0", h.Source.ToString());
        Assert.Equal("[::ffff:10.0.0.1]:1", h.Destination.ToString());
        h = Done(V1("PROXY TCP6 :: 1::2:3 1 2\r\n"));
        Assert.Equal("[::]:1", h.Source.ToString());
        Assert.Equal("[1::2:3]:2", h.Destination.ToString());
        Assert.Equal(16, h.Source.AddressBytes.Length);
    }

    [Theory]
    [InlineData("PROXY UNKNOWN\r\n")]
    [InlineData("PROXY UNKNOWN ffff:f::1 whatever goes 1 2\r\n")]
    public void V1_UNKNOWN_has_no_addresses_and_ignores_the_rest_of_the_line(string line)
    {
        ProxyHeader h = Done(V1(line + "data"));
        Assert.Equal(ProxyFamily.Unspecified, h.Family);
        Assert.False(h.HasAddresses);
        Assert.Equal(line.Length, h.Length);
        Assert.Equal(0, h.Source.Length);
    }

    [Fact]
    public void V1_line_of_exactly_107_bytes_is_accepted_and_108_refused()
    {
        string pad = new('x', 107 - "PROXY UNKNOWN \r\n".Length);
        Assert.Equal(107, Done(V1($"PROXY UNKNOWN {pad}\r\n")).Length);
        Assert.Contains("107", Invalid(V1($"PROXY UNKNOWN {pad}x\r\n")), StringComparison.Ordinal);
        // the longest real TCP6 line fits
        string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        Assert.Equal(104, Done(V1($"PROXY TCP6 {full} {full} 65535 65535\r\n")).Length);
    }

    [Theory]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")] // LF alone
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n")] // CR not followed by LF
    [InlineData("PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n")] // a stray CR
    public void V1_without_CRLF_is_refused(string line) =>
        Assert.Contains("CRLF", Invalid(V1(line)), StringComparison.Ordinal);

    [Theory]
    [InlineData("PROXY TCP4 010.0.0.1 1.2.3.4 1 2\r\n")] // octal-looking
    [InlineData("PROXY TCP4 0x7f.0.0.1 1.2.3.4 1 2\r\n")]
    [InlineData("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n")] // short form
    [InlineData("PROXY TCP4 2130706433 1.2.3.4 1 2\r\n")] // a single number
    [InlineData("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n")]
    [InlineData("PROXY TCP4 ::1 1.2.3.4 1 2\r\n")] // family mismatch
    [InlineData("PROXY TCP6 1.2.3.4 ::1 1 2\r\n")]
    [InlineData("PROXY TCP6 ::1%eth0 ::1 1 2\r\n")] // zone
    [InlineData("PROXY TCP6 1::2::3 ::1 1 2\r\n")] // two gaps
    [InlineData("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n")]
    [InlineData("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n")]
    [InlineData("PROXY TCP6 12345:: ::1 1 2\r\n")]
    [InlineData("PROXY TCP6 1: ::1 1 2\r\n")]
    [InlineData("PROXY TCP6 :1 ::1 1 2\r\n")]
    [InlineData("PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n")]
    public void V1_non_canonical_or_wrong_family_addresses_are_refused(string line) =>
        Assert.Contains("address", Invalid(V1(line)), StringComparison.Ordinal);

    [Theory]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n")]
    public void V1_ports_out_of_range_or_not_plain_decimal_are_refused(string line) =>
        Invalid(V1(line));

    [Theory]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")]
    [InlineData("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n")]
    [InlineData("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n")]
    [InlineData("PROXY \r\n")]
    [InlineData("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n")]
    [InlineData("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n")]
    [InlineData("GET / HTTP/1.1\r\n")]
    public void V1_malformed_lines_are_refused(string line) => Invalid(V1(line));

    // ---- v2 ----

    [Fact]
    public void V2_PROXY_over_IPv4()
    {
        byte[] input = V2(Proxy, Tcp4, Inet(IPAddress.Parse("127.0.0.3"), IPAddress.Parse("127.0.0.1"), 40000, 8080));
        ProxyHeader h = Done([.. input, 1, 2, 3], ProxyProtocolMode.V2);
        Assert.Equal(2, h.Version);
        Assert.Equal(28, h.Length);
        Assert.Equal(ProxyFamily.Inet, h.Family);
        Assert.Equal("127.0.0.3:40000", h.Source.ToString());
        Assert.Equal("127.0.0.1:8080", h.Destination.ToString());
    }

    [Fact]
    public void V2_PROXY_over_IPv6_with_TLVs()
    {
        byte[] block = [.. Inet(IPAddress.Parse("2001:db8::7"), IPAddress.Parse("::1"), 1, 65535), .. Tlv(0x01, 2), .. Tlv(0x05, 0), .. Tlv(0x20, 300)];
        ProxyHeader h = Done(V2(Proxy, Tcp6, block));
        Assert.Equal(16 + 36 + 5 + 3 + 303, h.Length);
        Assert.Equal(ProxyFamily.Inet6, h.Family);
        Assert.Equal("[2001:db8::7]:1", h.Source.ToString());
        Assert.Equal("[::1]:65535", h.Destination.ToString());
    }

    [Fact]
    public void V2_PROXY_over_unix_sockets()
    {
        ProxyHeader h = Done(V2(Proxy, UnixStream, UnixBlock("/run/client.sock", new string('d', 108))));
        Assert.Equal(ProxyFamily.Unix, h.Family);
        Assert.Equal("unix:/run/client.sock", h.Source.ToString());
        Assert.Equal(108, h.Destination.AddressBytes.Length); // a path that fills sun_path, no NUL
        Assert.Equal(0, h.Source.Port);
    }

    [Fact]
    public void V2_LOCAL_is_a_health_check_without_addresses_whatever_the_family_byte()
    {
        ProxyHeader h = Done(V2(Local, Unspec, []));
        Assert.Equal(ProxyCommand.Local, h.Command);
        Assert.Equal(16, h.Length);
        Assert.False(h.HasAddresses);
        h = Done(V2(Local, 0xFF, [.. Inet(IPAddress.Loopback, IPAddress.Loopback, 1, 2), 9, 9, 9])); // discarded unchecked
        Assert.Equal(ProxyCommand.Local, h.Command);
        Assert.Equal(ProxyFamily.Unspecified, h.Family);
        Assert.Equal(0, h.Source.Length);
        Assert.Equal(16 + 12 + 3, h.Length);
        Assert.Contains("longer", Invalid(V2(Local, Unspec, [], lengthField: ProxyHeader.MaxV2Payload + 1)), StringComparison.Ordinal);
    }

    [Fact]
    public void V2_PROXY_with_UNSPEC_family_means_use_the_real_endpoints()
    {
        ProxyHeader h = Done(V2(Proxy, Unspec, Tlv(1, 3)));
        Assert.Equal(ProxyCommand.Proxy, h.Command);
        Assert.False(h.HasAddresses);
    }

    [Fact]
    public void V2_length_up_to_the_cap_is_accepted_and_beyond_refused_before_reading_it()
    {
        byte[] block = [.. Inet(IPAddress.Loopback, IPAddress.Loopback, 1, 2), .. Tlv(0xEE, ProxyHeader.MaxV2Payload - 12 - 3)];
        Assert.Equal(ProxyHeader.MaxLength, Done(V2(Proxy, Tcp4, block)).Length);
        byte[] tooLong = V2(Proxy, Tcp4, [], lengthField: ProxyHeader.MaxV2Payload + 1);
        Assert.Contains("longer", Invalid(tooLong), StringComparison.Ordinal); // only the 16 bytes, not the body
    }

    [Theory]
    [InlineData(Tcp4, 11)]
    [InlineData(Tcp6, 35)]
    [InlineData(Tcp6, 12)]
    [InlineData(UnixStream, 215)]
    public void V2_address_block_shorter_than_the_family_needs_is_refused(byte family, int length) =>
        Assert.Contains("shorter", Invalid(V2(Proxy, family, new byte[length])), StringComparison.Ordinal);

    [Theory]
    [InlineData(new byte[] { 0, 0 })] // a type and half a length
    [InlineData(new byte[] { 1, 0, 2, 9 })] // declares 2, has 1
    public void V2_TLV_running_past_the_header_is_refused(byte[] tlvs) =>
        Assert.Contains("TLV", Invalid(V2(Proxy, Tcp4, [.. new byte[12], .. tlvs])), StringComparison.Ordinal);

    [Theory]
    [InlineData(0x11, Tcp4, "version")] // version 1 in a binary header
    [InlineData(0x31, Tcp4, "version")]
    [InlineData(0x22, Tcp4, "command")]
    [InlineData(0x2F, Tcp4, "command")]
    [InlineData(Proxy, 0x41, "family")]
    [InlineData(Proxy, 0x13, "family")]
    [InlineData(Proxy, 0x01, "family")] // UNSPEC family over STREAM is not one of the spec's values
    [InlineData(Proxy, 0x10, "family")]
    [InlineData(Proxy, 0x12, "datagram")]
    public void V2_unknown_version_command_or_family_is_refused(byte verCmd, byte famProto, string why)
    {
        byte[] header = V2(verCmd, famProto, new byte[216]);
        Assert.Contains(why, Invalid(header), StringComparison.Ordinal);
        Assert.Contains(why, Invalid(header[..14]), StringComparison.Ordinal); // refused as soon as the byte arrives
    }

    [Fact]
    public void V2_bad_signature_is_refused_at_the_first_wrong_byte()
    {
        byte[] header = V2(Proxy, Tcp4, new byte[12]);
        for (int i = 0; i < 12; i++)
        {
            byte[] bad = (byte[])header.Clone();
            bad[i] ^= 0x40;
            Assert.Equal(ProxyParseStatus.Invalid, Parse(bad[..(i + 1)], out _, out _, out _, i == 0 ? ProxyProtocolMode.V2 : ProxyProtocolMode.Any));
        }
    }

    // ---- modes ----

    [Fact]
    public void Each_mode_accepts_only_its_versions_and_no_header_is_refused()
    {
        byte[] v1 = V1("PROXY UNKNOWN\r\n"), v2 = V2(Local, Unspec, []);
        Done(v1, ProxyProtocolMode.V1);
        Done(v2, ProxyProtocolMode.V2);
        Done(v1, ProxyProtocolMode.Any);
        Done(v2, ProxyProtocolMode.Any);
        Assert.Contains("v1", Invalid(v2, ProxyProtocolMode.V1), StringComparison.Ordinal);
        Assert.Contains("v2", Invalid(v1, ProxyProtocolMode.V2), StringComparison.Ordinal);
        Invalid(V1("SSH-2.0-OpenSSH\r\n"));
        Invalid([0x16, 0x03, 0x01]); // a TLS ClientHello
    }

    [Fact]
    public void Empty_input_needs_one_byte()
    {
        Assert.Equal(ProxyParseStatus.NeedMore, Parse([], out _, out int needed, out _));
        Assert.Equal(1, needed);
    }

    [Fact]
    public void Parsing_allocates_nothing()
    {
        byte[][] inputs =
        [
            V1("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 1\r\n"),
            V1("PROXY TCP4 010.0.0.1 1.2.3.4 1 2\r\n"),
            V2(Proxy, Tcp6, [.. Inet(IPAddress.IPv6Loopback, IPAddress.IPv6Loopback, 1, 2), .. Tlv(1, 5)]),
            V2(Proxy, UnixStream, UnixBlock("/a", "/b")),
        ];
        foreach (byte[] input in inputs)
        {
            ProxyHeader.Parse(input, ProxyProtocolMode.Any, out _, out _, out _); // warm up
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            foreach (byte[] input in inputs)
            {
                ProxyHeader.Parse(input, ProxyProtocolMode.Any, out _, out _, out _);
                ProxyHeader.Parse(input.AsSpan(0, input.Length / 2), ProxyProtocolMode.Any, out _, out _, out _);
            }
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    // ---- split at every byte ----

    public static TheoryData<string> SplitCases() =>
    [
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 1\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY TCP4 010.0.0.1 1.2.3.4 1 2\r\n",
        "v2:ipv4", "v2:ipv6+tlv", "v2:unix", "v2:local", "v2:short-tlv", "v2:too-long",
    ];

    [Theory]
    [MemberData(nameof(SplitCases))]
    public void A_header_split_at_any_byte_needs_more_until_complete_then_parses_the_same(string which)
    {
        byte[] header = which switch
        {
            "v2:ipv4" => V2(Proxy, Tcp4, Inet(IPAddress.Parse("10.1.2.3"), IPAddress.Parse("10.0.0.1"), 5, 6)),
            "v2:ipv6+tlv" => V2(Proxy, Tcp6, [.. Inet(IPAddress.Parse("fe80::1"), IPAddress.IPv6Loopback, 5, 6), .. Tlv(2, 17)]),
            "v2:unix" => V2(Proxy, UnixStream, UnixBlock("/a", "/b")),
            "v2:local" => V2(Local, Unspec, Tlv(3, 4)),
            "v2:short-tlv" => V2(Proxy, Tcp4, [.. new byte[12], 1, 0, 5, 0]),
            "v2:too-long" => V2(Proxy, Tcp4, new byte[ProxyHeader.MaxV2Payload + 1]),
            _ => V1(which),
        };
        AssertSplitsAgree(header);
        if (which.StartsWith('P'))
        {
            AssertSplitsAgree(header, ProxyProtocolMode.V1);
        }
        else
        {
            AssertSplitsAgree(header, ProxyProtocolMode.V2);
        }
    }

    [Fact]
    public void A_v1_line_without_CRLF_needs_more_until_107_bytes_then_is_refused()
    {
        byte[] line = V1("PROXY UNKNOWN " + new string('x', 200));
        for (int n = 0; n < ProxyHeader.MaxV1Length; n++)
        {
            Assert.Equal(ProxyParseStatus.NeedMore, Parse(line[..n], out _, out _, out _));
        }
        Assert.Equal(ProxyParseStatus.Invalid, Parse(line[..ProxyHeader.MaxV1Length], out _, out _, out _));
        Assert.Equal(ProxyParseStatus.Invalid, Parse(line, out _, out _, out _));
    }

    // ---- properties ----

    private sealed record Fields(int Version, bool Local, int Family, byte[] Src, byte[] Dst, int SPort, int DPort, int[] TlvLengths, bool Compress);

    private static readonly Gen<Fields> s_fields =
        Gen.Select(
            Gen.Select(Gen.Int[1, 2], Gen.Int[0, 9], Gen.Int[0, 3], Gen.Bool),
            Gen.Select(Gen.Byte.Array[16], Gen.Byte.Array[16], Gen.Int[0, 65535], Gen.Int[0, 65535]),
            Gen.Int[0, 60].Array[0, 4],
            (a, b, tlvs) => new Fields(a.Item1, a.Item2 == 0, a.Item3, Sparse(b.Item1, a.Item4), b.Item2, b.Item3, b.Item4, tlvs, a.Item4));

    /// <summary>Half the IPv6 sources get a run of zero groups, so the compressed text form uses <c>::</c>.</summary>
    private static byte[] Sparse(byte[] b, bool sparse) => sparse ? [.. b[..2], .. new byte[10], .. b[12..]] : b;

    private static string V6Text(byte[] a, bool compress) => compress
        ? new IPAddress(a).ToString()
        : string.Join(':', Enumerable.Range(0, 8).Select(i => BinaryPrimitives.ReadUInt16BigEndian(a.AsSpan(2 * i)).ToString(i % 2 == 0 ? "x" : "X4", null)));

    private static string UnixPath(byte[] b) => "/" + Convert.ToHexString(b);

    /// <summary>The header's bytes and the address bytes the parser should find (null for none).</summary>
    private static (byte[] Bytes, byte[]? Src, byte[]? Dst) Write(Fields f)
    {
        byte[] s4 = f.Src[..4], d4 = f.Dst[..4];
        if (f.Version == 1)
        {
            return f.Family switch
            {
                1 => (V1($"PROXY TCP4 {new IPAddress(s4)} {new IPAddress(d4)} {f.SPort} {f.DPort}\r\n"), s4, d4),
                2 => (V1($"PROXY TCP6 {V6Text(f.Src, f.Compress)} {V6Text(f.Dst, f.Compress)} {f.SPort} {f.DPort}\r\n"), f.Src, f.Dst),
                _ => (V1("PROXY UNKNOWN\r\n"), null, null),
            };
        }
        byte[] tlvs = [.. f.TlvLengths.SelectMany(n => Tlv((byte)n, n))];
        byte cmd = f.Local ? Local : Proxy;
        return f.Family switch
        {
            1 => (V2(cmd, Tcp4, [.. Inet(new IPAddress(s4), new IPAddress(d4), f.SPort, f.DPort), .. tlvs]), s4, d4),
            2 => (V2(cmd, Tcp6, [.. Inet(new IPAddress(f.Src), new IPAddress(f.Dst), f.SPort, f.DPort), .. tlvs]), f.Src, f.Dst),
            3 => (V2(cmd, UnixStream, [.. UnixBlock(UnixPath(f.Src), UnixPath(f.Dst)), .. tlvs]),
                  Encoding.ASCII.GetBytes(UnixPath(f.Src)), Encoding.ASCII.GetBytes(UnixPath(f.Dst))),
            _ => (V2(cmd, Unspec, tlvs), null, null),
        };
    }

    [Fact]
    public void Random_valid_headers_round_trip()
    {
        s_fields.Sample(f =>
        {
            (byte[] bytes, byte[]? src, byte[]? dst) = Write(f);
            ProxyHeader h = Done([.. bytes, .. "tail"u8]);
            Assert.Equal(bytes.Length, h.Length);
            Assert.Equal(f.Version, h.Version);
            bool local = f.Version == 2 && f.Local;
            Assert.Equal(local ? ProxyCommand.Local : ProxyCommand.Proxy, h.Command);
            Assert.Equal(local || src == null ? ProxyFamily.Unspecified : (ProxyFamily)f.Family, h.Family);
            Assert.Equal(!local && src != null, h.HasAddresses);
            if (h.HasAddresses)
            {
                Assert.Equal(src, h.Source.AddressBytes.ToArray());
                Assert.Equal(dst, h.Destination.AddressBytes.ToArray());
                Assert.Equal(f.Family == 3 ? 0 : f.SPort, h.Source.Port);
                Assert.Equal(f.Family == 3 ? 0 : f.DPort, h.Destination.Port);
            }
            else
            {
                Assert.Equal(0, h.Source.Length);
                Assert.Equal(0, h.Destination.Length);
            }
            Assert.Equal(ProxyParseStatus.NeedMore, Parse(bytes[..^1], out _, out int needed, out _));
            Assert.Equal(bytes.Length, needed);
        }, iter: 20_000);
    }

    private static readonly Gen<byte[]> s_noise = Gen.OneOf(
        Gen.Byte.Array[0, 600],
        Gen.Byte.Array[0, 80].Select(b => (byte[])[.. "PROXY "u8, .. b]),
        Gen.Char["PROXYTCP46UNKOW0123456789abcdef.: \r\n"].Array[0, 120].Select(c => Encoding.ASCII.GetBytes(c)),
        Gen.Select(Gen.Byte, Gen.Byte, Gen.Int[0, 700], Gen.Byte.Array[0, 600], (vc, fp, len, body) => V2(vc, fp, body, len)));

    [Fact]
    public void Random_bytes_never_throw_and_never_read_past_the_input()
    {
        s_noise.Sample(bytes =>
        {
            foreach (ProxyProtocolMode mode in (ProxyProtocolMode[])[ProxyProtocolMode.V1, ProxyProtocolMode.V2, ProxyProtocolMode.Any])
            {
                // an exact-size array: any read past it would throw IndexOutOfRangeException and fail the sample
                ProxyParseStatus st = ProxyHeader.Parse(bytes, mode, out ProxyHeader h, out int needed, out string? reason);
                switch (st)
                {
                    case ProxyParseStatus.Done:
                        Assert.InRange(h.Length, 15, Math.Min(bytes.Length, ProxyHeader.MaxLength));
                        break;
                    case ProxyParseStatus.NeedMore:
                        Assert.InRange(needed, bytes.Length + 1, ProxyHeader.MaxLength);
                        break;
                    default:
                        Assert.False(string.IsNullOrEmpty(reason));
                        break;
                }
            }
        }, iter: 50_000);
    }
}
