using System.Globalization;
using System.Net;

namespace TcpFork;

/// <summary>
/// Where to listen: <c>HOST:PORT</c>, <c>[IPV6]:PORT</c> or <c>unix:PATH</c>. HOST is an IP literal,
/// <c>*</c> (every IPv4 address) or a name resolved once at start. IPv4 only as a canonical dotted quad
/// (<c>10.0.0.1</c>; no octal, hex or short forms — <see cref="IPText"/>).
/// </summary>
public sealed class ListenAddress
{
    private ListenAddress(string text, string? host, int port, string? unixPath)
    {
        Text = text;
        Host = host;
        Port = port;
        UnixPath = unixPath;
    }

    /// <summary>The address as the user wrote it.</summary>
    public string Text { get; }

    /// <summary>The host part (no brackets), or null for a unix socket.</summary>
    public string? Host { get; }

    /// <summary>The TCP port; 0 asks the kernel for an ephemeral one.</summary>
    public int Port { get; }

    /// <summary>The path of a unix-domain socket, or null for TCP.</summary>
    public string? UnixPath { get; }

    /// <summary>Parses <paramref name="text"/>; throws <see cref="FormatException"/> with a one-line reason.</summary>
    public static ListenAddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.StartsWith("unix:", StringComparison.Ordinal))
        {
            string path = text[5..];
            if (path.Length == 0 || System.Text.Encoding.UTF8.GetByteCount(path) > 107)
            {
                throw new FormatException($"'{text}': a unix socket path must be 1 to 107 bytes");
            }
            return new ListenAddress(text, null, 0, path);
        }
        string host;
        string portText;
        if (text.StartsWith('['))
        {
            int close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= text.Length || text[close + 1] != ':')
            {
                throw new FormatException($"'{text}': expected [IPV6]:PORT");
            }
            host = text[1..close];
            portText = text[(close + 2)..];
            if (!IPText.TryParse(host, out IPAddress? v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                throw new FormatException($"'{text}': '{host}' is not an IPv6 address");
            }
        }
        else
        {
            int colon = text.LastIndexOf(':');
            if (colon < 0)
            {
                throw new FormatException($"'{text}': expected HOST:PORT, [IPV6]:PORT or unix:PATH");
            }
            host = text[..colon];
            portText = text[(colon + 1)..];
            if (host.Contains(':', StringComparison.Ordinal))
            {
                throw new FormatException($"'{text}': write an IPv6 address in brackets, e.g. [::1]:{portText}");
            }
            if (host.Length == 0)
            {
                throw new FormatException($"'{text}': missing host (use * or 0.0.0.0 for every address)");
            }
            if (host != "*" && !IPText.TryParse(host, out _) && IPText.LooksLikeIPv4(host))
            {
                throw new FormatException($"'{text}': '{host}' is not an IPv4 address in dotted-quad form (four decimal numbers 0-255, no leading zeros)");
            }
            if (host.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            {
                throw new FormatException($"'{text}': the host must not contain spaces or control characters");
            }
        }
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535)
        {
            throw new FormatException($"'{text}': port '{portText}' is not a number from 0 to 65535");
        }
        return new ListenAddress(text, host, port, null);
    }

    /// <summary>The socket addresses to bind: one for a literal, one per address a name resolves to.</summary>
    internal IReadOnlyList<SockAddr> Resolve()
    {
        if (UnixPath is not null)
        {
            return [SockAddr.FromUnixPath(UnixPath)];
        }
        if (Host == "*")
        {
            return [SockAddr.FromIP(IPAddress.Any, Port)];
        }
        if (IPText.TryParse(Host!, out IPAddress? ip))
        {
            return [SockAddr.FromIP(ip, Port)];
        }
        IPAddress[] found;
        try
        {
            found = Dns.GetHostAddresses(Host!);
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new FormatException($"TcpForkServerOptions.Listen '{Printable.Truncate(Text)}': unknown host '{Printable.Truncate(Host!)}' ({e.Message})", e);
        }
        catch (ArgumentException e)
        {
            // Not a name DNS could look up at all (over 255 characters, empty labels…).
            throw new FormatException($"TcpForkServerOptions.Listen '{Printable.Truncate(Text)}': '{Printable.Truncate(Host!)}' is not a valid host name", e);
        }
        if (found.Length == 0)
        {
            throw new FormatException($"TcpForkServerOptions.Listen '{Text}': unknown host '{Host}'");
        }
        return found.Distinct().Select(a => SockAddr.FromIP(a, Port)).ToArray();
    }

    /// <inheritdoc/>
    public override string ToString() => Text;
}
