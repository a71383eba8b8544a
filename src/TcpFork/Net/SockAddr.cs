using System.Buffers.Binary;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;

namespace TcpFork;

/// <summary>
/// A socket address as the kernel writes it (struct sockaddr_storage) plus its length. A value type
/// formatted straight into UTF-8, so the parent logs peers without allocating.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SockAddr : IUtf8SpanFormattable, ISpanFormattable
{
    public const int Capacity = 128;
    private fixed byte _bytes[Capacity];

    /// <summary>How many bytes of the buffer are the address (socklen_t).</summary>
    public int Length;

    /// <summary>
    /// For a unix-socket peer: the uid of the process that connected (SO_PEERCRED), read by the parent at
    /// accept — what rules, <c>--max-per-ip</c> and <c>--rate</c> judge a unix client by. Unused for TCP.
    /// </summary>
    public uint Uid;

    public readonly int Family => _bytes[0] | (_bytes[1] << 8);

    public readonly bool IsUnix => Family == Interop.AF_UNIX;

    /// <summary>The TCP port, or 0 for a unix socket.</summary>
    public readonly int Port => IsUnix ? 0 : (_bytes[2] << 8) | _bytes[3];

    /// <summary>The address bytes: 4 for IPv4, 16 for IPv6, the path for a unix socket.</summary>
    public readonly ReadOnlySpan<byte> AddressBytes
    {
        get
        {
            fixed (byte* p = _bytes)
            {
                return Family switch
                {
                    Interop.AF_INET => new ReadOnlySpan<byte>(p + 4, 4),
                    Interop.AF_INET6 => new ReadOnlySpan<byte>(p + 8, 16),
                    Interop.AF_UNIX => UnixPath(new ReadOnlySpan<byte>(p + 2, Math.Max(0, Length - 2))),
                    _ => default,
                };
            }
        }
    }

    private static ReadOnlySpan<byte> UnixPath(ReadOnlySpan<byte> raw)
    {
        int nul = raw.IndexOf((byte)0);
        return nul < 0 ? raw : raw[..nul];
    }

    public static SockAddr FromIP(IPAddress ip, int port)
    {
        var a = new SockAddr();
        Span<byte> b = a.Raw;
        if (ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b, Interop.AF_INET);
            ip.TryWriteBytes(b[4..8], out _);
            a.Length = 16;
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b, Interop.AF_INET6);
            ip.TryWriteBytes(b[8..24], out _);
            BinaryPrimitives.WriteUInt32LittleEndian(b[24..], (uint)ip.ScopeId);
            a.Length = 28;
        }
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)port);
        return a;
    }

    public static SockAddr FromUnixPath(string path)
    {
        var a = new SockAddr();
        Span<byte> b = a.Raw;
        int n = Encoding.UTF8.GetBytes(path, b[2..^1]);
        BinaryPrimitives.WriteUInt16LittleEndian(b, Interop.AF_UNIX);
        a.Length = 2 + n + 1;
        return a;
    }

    /// <summary>The whole buffer, for the kernel to fill or read.</summary>
    public Span<byte> Raw => MemoryMarshal.CreateSpan(ref _bytes[0], Capacity);

    /// <summary>The buffer, read-only.</summary>
    public readonly ReadOnlySpan<byte> RawBytes
    {
        get
        {
            fixed (byte* p = _bytes)
            {
                return new ReadOnlySpan<byte>(p, Capacity);
            }
        }
    }

    /// <summary>The IP as text: <c>127.0.0.1</c>, <c>::1</c>; a unix socket's path.</summary>
    public readonly bool TryFormatIP(Span<byte> dest, out int written)
    {
        ReadOnlySpan<byte> a = AddressBytes;
        switch (Family)
        {
            case Interop.AF_INET:
                return Utf8.TryWrite(dest, $"{a[0]}.{a[1]}.{a[2]}.{a[3]}", out written);
            case Interop.AF_INET6:
                return TryFormatIPv6(a, dest, out written);
            case Interop.AF_UNIX:
                written = a.Length;
                return a.TryCopyTo(dest);
            default:
                written = 0;
                return false;
        }
    }

    /// <summary>RFC 5952 text: lower-case hex, the longest run of two or more zero groups as <c>::</c>.</summary>
    private static bool TryFormatIPv6(ReadOnlySpan<byte> a, Span<byte> dest, out int written)
    {
        Span<ushort> g = stackalloc ushort[8];
        for (int i = 0; i < 8; i++)
        {
            g[i] = BinaryPrimitives.ReadUInt16BigEndian(a[(2 * i)..]);
        }
        if (g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0 && g[4] == 0 && g[5] == 0xffff)
        {
            return Utf8.TryWrite(dest, $"::ffff:{a[12]}.{a[13]}.{a[14]}.{a[15]}", out written);
        }
        int bestStart = -1, bestLen = 1;
        for (int i = 0; i < 8;)
        {
            if (g[i] != 0)
            {
                i++;
                continue;
            }
            int j = i;
            while (j < 8 && g[j] == 0)
            {
                j++;
            }
            if (j - i > bestLen)
            {
                bestStart = i;
                bestLen = j - i;
            }
            i = j;
        }
        written = 0;
        for (int i = 0; i < 8; i++)
        {
            if (i == bestStart)
            {
                if (!Put(dest, ref written, i == 0 ? "::"u8 : ":"u8))
                {
                    return false;
                }
                i += bestLen - 1;
                continue;
            }
            if (!Utf8.TryWrite(dest[written..], $"{g[i]:x}", out int w))
            {
                return false;
            }
            written += w;
            if (i < 7 && !Put(dest, ref written, ":"u8))
            {
                return false;
            }
        }
        return true;
    }

    private static bool Put(Span<byte> dest, ref int written, ReadOnlySpan<byte> s)
    {
        if (!s.TryCopyTo(dest[written..]))
        {
            return false;
        }
        written += s.Length;
        return true;
    }

    /// <summary><c>127.0.0.1:5555</c>, <c>[::1]:5555</c>, <c>unix:/path</c> (or <c>unix</c> for an unnamed peer).</summary>
    public readonly bool TryFormat(Span<byte> utf8Destination, out int bytesWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        bytesWritten = 0;
        Span<byte> ip = stackalloc byte[112];
        if (!TryFormatIP(ip, out int n))
        {
            return Utf8.TryWrite(utf8Destination, $"family{Family}", out bytesWritten);
        }
        ip = ip[..n];
        return Family switch
        {
            Interop.AF_INET => Utf8.TryWrite(utf8Destination, $"{ip}:{Port}", out bytesWritten),
            Interop.AF_INET6 => Utf8.TryWrite(utf8Destination, $"[{ip}]:{Port}", out bytesWritten),
            _ => n == 0 ? Put(utf8Destination, ref bytesWritten, "unix"u8)
                        : Utf8.TryWrite(utf8Destination, $"unix:{ip}", out bytesWritten),
        };
    }

    public readonly bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        Span<byte> u = stackalloc byte[160];
        charsWritten = 0;
        return TryFormat(u, out int n, format, provider)
            && Encoding.UTF8.TryGetChars(u[..n], destination, out charsWritten);
    }

    public readonly string ToString(string? format, IFormatProvider? formatProvider) => ToString();

    public override readonly string ToString()
    {
        Span<byte> u = stackalloc byte[160];
        return TryFormat(u, out int n, default, null) ? Encoding.UTF8.GetString(u[..n]) : "?";
    }
}
