using System.Text.Unicode;

namespace TcpFork;

/// <summary>
/// The UCSPI-TCP variables, as ucspi-tcp-ipv6's tcpserver sets them: PROTO=TCP (or TCP6 for an IPv6
/// client), TCPLOCALIP/PORT, TCPREMOTEIP/PORT and the same as TCP6* (an IPv4 address there as
/// <c>::ffff:a.b.c.d</c>), TCPLOCALHOST when a local name is given, and TCPCONNNUM. No DNS or ident
/// lookups, so TCPREMOTEHOST and TCPREMOTEINFO are never set. A unix socket gets PROTO=UNIX and
/// UNIXLOCALPATH. Entries are written as <c>KEY=VALUE\0</c> into a caller's buffer: no allocation.
/// </summary>
internal static class UcspiEnvironment
{
    /// <summary>Variables a child must not inherit from tcpfork's own environment: they are set per connection or not at all.</summary>
    public static readonly string[] Names =
    [
        "PROTO", "TCPLOCALIP", "TCPLOCALPORT", "TCPLOCALHOST", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPREMOTEHOST",
        "TCPREMOTEINFO", "TCPCONNNUM", "TCP6LOCALIP", "TCP6LOCALPORT", "TCP6LOCALHOST", "TCP6REMOTEIP",
        "TCP6REMOTEPORT", "TCP6REMOTEHOST", "TCP6REMOTEINFO", "TCP6INTERFACE", "TCPINTERFACE", "UNIXLOCALPATH",
    ];

    public const int MaxEntries = 14;

    /// <summary>
    /// Bytes <see cref="Write"/> needs with a local name of <paramref name="localNameBytes"/>: the fixed
    /// entries take under 600 (two IPv6 addresses twice, ports, a 20-digit count, or a unix path),
    /// and the name is written twice (TCPLOCALHOST, TCP6LOCALHOST).
    /// </summary>
    public static int BufferSize(int localNameBytes) => 1024 + 2 * ("TCP6LOCALHOST=".Length + localNameBytes + 1);

    /// <summary>Writes the entries; <paramref name="starts"/> receives each entry's offset. Returns the count.</summary>
    public static int Write(Span<byte> dest, in Accepted c, ReadOnlySpan<byte> localName, Span<int> starts)
    {
        int n = 0, at = 0;
        if (c.Local.IsUnix)
        {
            Add(dest, ref at, starts, ref n, "PROTO=UNIX"u8, default, default);
            Span<byte> path = stackalloc byte[112];
            c.Local.TryFormatIP(path, out int len);
            Add(dest, ref at, starts, ref n, "UNIXLOCALPATH="u8, path[..len], default);
            return n;
        }
        Span<byte> local = stackalloc byte[64], remote = stackalloc byte[64];
        c.Local.TryFormatIP(local, out int ll);
        c.Peer.TryFormatIP(remote, out int rl);
        local = local[..ll];
        remote = remote[..rl];
        bool v6 = c.Peer.Family == Interop.AF_INET6;
        Span<byte> num = stackalloc byte[24];
        Add(dest, ref at, starts, ref n, "PROTO="u8, v6 ? "TCP6"u8 : "TCP"u8, default);
        Add(dest, ref at, starts, ref n, "TCPLOCALIP="u8, local, default);
        Add(dest, ref at, starts, ref n, "TCPLOCALPORT="u8, Number(num, c.Local.Port), default);
        Add(dest, ref at, starts, ref n, "TCPREMOTEIP="u8, remote, default);
        Add(dest, ref at, starts, ref n, "TCPREMOTEPORT="u8, Number(num, c.Peer.Port), default);
        Add(dest, ref at, starts, ref n, "TCPCONNNUM="u8, Number(num, c.FromSameIp), default);
        ReadOnlySpan<byte> mapped = v6 ? default : "::ffff:"u8;
        Add(dest, ref at, starts, ref n, "TCP6LOCALIP="u8, mapped, local);
        Add(dest, ref at, starts, ref n, "TCP6LOCALPORT="u8, Number(num, c.Local.Port), default);
        Add(dest, ref at, starts, ref n, "TCP6REMOTEIP="u8, mapped, remote);
        Add(dest, ref at, starts, ref n, "TCP6REMOTEPORT="u8, Number(num, c.Peer.Port), default);
        if (!localName.IsEmpty)
        {
            Add(dest, ref at, starts, ref n, "TCPLOCALHOST="u8, localName, default);
            Add(dest, ref at, starts, ref n, "TCP6LOCALHOST="u8, localName, default);
        }
        return n;
    }

    private static ReadOnlySpan<byte> Number(Span<byte> scratch, long value) =>
        Utf8.TryWrite(scratch, $"{value}", out int w) ? scratch[..w] : default;

    private static void Add(Span<byte> dest, ref int at, Span<int> starts, ref int n, ReadOnlySpan<byte> key, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        starts[n++] = at;
        key.CopyTo(dest[at..]);
        at += key.Length;
        a.CopyTo(dest[at..]);
        at += a.Length;
        b.CopyTo(dest[at..]);
        at += b.Length;
        dest[at++] = 0;
    }
}
