using System.Globalization;

namespace TcpFork;

/// <summary>A per-IP connection rate: at most <see cref="Count"/> connections every <see cref="Per"/>.</summary>
public sealed record RateLimit(int Count, TimeSpan Per)
{
    /// <summary>Parses <c>N/SECONDS</c>, e.g. <c>10/60</c>.</summary>
    public static RateLimit Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1
            || !double.TryParse(parts[1], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double s) || !(s > 0 && s <= 86400))
        {
            throw new FormatException($"'{text}': expected N/SECONDS, e.g. 10/60 (N at least 1, SECONDS up to 86400)");
        }
        return new RateLimit(n, TimeSpan.FromSeconds(s));
    }
}
