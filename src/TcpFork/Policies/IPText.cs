using System.Net;
using System.Net.Sockets;

namespace TcpFork;

/// <summary>
/// IP literals as tcpfork accepts them in rules and <c>--listen</c>: IPv4 only as a canonical dotted quad
/// (four decimal numbers 0–255, no leading zeros: <c>10.0.0.1</c>), never the inet_aton forms that
/// <see cref="IPAddress.TryParse(string?, out IPAddress?)"/> and getaddrinfo also read — octal
/// (<c>0177.0.0.1</c> is 127.0.0.1, <c>010.0.0.1</c> is 8.0.0.1), hex (<c>0x7f.0.0.1</c>), short
/// (<c>1.2.3</c> is 1.2.0.3) or a single number (<c>2130706433</c>). IPv6 as usual, with any embedded
/// IPv4 part a dotted quad too; no zone (<c>%eth0</c>).
/// </summary>
internal static class IPText
{
    /// <summary>True for exactly four decimal numbers 0–255 without leading zeros, separated by dots.</summary>
    public static bool IsDottedQuad(ReadOnlySpan<char> text)
    {
        int parts = 0;
        int i = 0;
        while (true)
        {
            int start = i;
            int value = 0;
            while (i < text.Length && char.IsAsciiDigit(text[i]) && i - start < 3)
            {
                value = (value * 10) + (text[i] - '0');
                i++;
            }
            int digits = i - start;
            if (digits == 0 || value > 255 || (digits > 1 && text[start] == '0'))
            {
                return false;
            }
            parts++;
            if (i == text.Length)
            {
                return parts == 4;
            }
            if (text[i] != '.' || parts == 4)
            {
                return false;
            }
            i++;
        }
    }

    /// <summary>Parses an IP literal under the rules above; false for anything else.</summary>
    public static bool TryParse(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        if (text.Contains(':', StringComparison.Ordinal))
        {
            int lastColon = text.LastIndexOf(':');
            return !text.Contains('%', StringComparison.Ordinal)
                && (!text.Contains('.', StringComparison.Ordinal) || IsDottedQuad(text.AsSpan(lastColon + 1)))
                && IPAddress.TryParse(text, out address) && address.AddressFamily == AddressFamily.InterNetworkV6;
        }
        return IsDottedQuad(text) && IPAddress.TryParse(text, out address) && address.AddressFamily == AddressFamily.InterNetwork;
    }

    /// <summary>
    /// True when some resolver would read <paramref name="host"/> as an IPv4 address (inet_aton's forms:
    /// digits and dots, hex parts, a single number): a host name that is not a dotted quad must not be one of these.
    /// </summary>
    public static bool LooksLikeIPv4(string host) =>
        (IPAddress.TryParse(host, out IPAddress? a) && a.AddressFamily == AddressFamily.InterNetwork)
        || host.All(c => char.IsAsciiDigit(c) || c == '.')
        || host.Split('.').All(p => p.Length > 0 && (p.All(char.IsAsciiDigit) || (p.Length > 2 && p[0] == '0' && (p[1] | 0x20) == 'x' && !p.AsSpan(2).ContainsAnyExcept("0123456789abcdefABCDEF"))));
}
