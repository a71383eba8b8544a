using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace TcpFork.Cli;

/// <summary>
/// Options whose values are checked by tcpfork itself, never by System.CommandLine's type conversion:
/// a bad value gives one line naming the option, the range and the value as typed (no .NET type name).
/// None has a parser default: where a default applies the description states it once, and the code
/// that reads the option leaves the library's (or the command's) default in place when it is absent.
/// </summary>
internal static class OptionParsers
{
    /// <summary>A description that ends by stating the default once.</summary>
    public static string WithDefault(string description, object value) =>
        $"{description} Default {(value is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : value)}.";

    /// <summary>An integer from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static Option<int?> Whole(string name, string description, int min, int max, string helpName = "N", params string[] aliases) => new(name, aliases)
    {
        Description = description,
        HelpName = helpName,
        CustomParser = r =>
        {
            string text = Last(r);
            if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v) || v < min || v > max)
            {
                r.AddError($"{name} must be from {min} to {max}, not '{Printable.Truncate(text)}'");
                return null;
            }
            return v;
        },
    };

    /// <summary>A number of seconds from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static Option<double?> Seconds(string name, string description, double min, double max, params string[] aliases) => new(name, aliases)
    {
        Description = description,
        HelpName = "SECONDS",
        CustomParser = r =>
        {
            string text = Last(r);
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v >= min && v <= max))
            {
                r.AddError($"{name} must be a number of seconds from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}, not '{Printable.Truncate(text)}'");
                return null;
            }
            return v;
        },
    };

    /// <summary>A whole number of at least 1; with <paramref name="sizes"/>, a K, M or G suffix multiplies it by 1024, 1024², 1024³.</summary>
    public static Option<long?> Count(string name, string description, bool sizes, params string[] aliases) => new(name, aliases)
    {
        Description = description,
        HelpName = sizes ? "BYTES" : "N",
        CustomParser = r =>
        {
            string text = Last(r);
            long scale = 1;
            string digits = text;
            if (sizes && text.Length > 0 && "KMG".Contains(char.ToUpperInvariant(text[^1]), StringComparison.Ordinal))
            {
                scale = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, _ => 1L << 30 };
                digits = text[..^1];
            }
            if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long v) || v < 1 || v > long.MaxValue / scale)
            {
                r.AddError($"{name} must be a whole number of at least 1{(sizes ? " (K, M, G suffixes allowed)" : "")}, not '{Printable.Truncate(text)}'");
                return null;
            }
            return v * scale;
        },
    };

    /// <summary>One of an enum's values, written in lower case (<c>auto|fork|spawn</c>); any case is accepted.</summary>
    public static Option<T?> Choice<T>(string name, string description)
        where T : struct, Enum
    {
        T[] values = Enum.GetValues<T>();
        string[] names = [.. values.Select(LowerName)];
        return new(name)
        {
            Description = description,
            HelpName = string.Join('|', names),
            CustomParser = r =>
            {
                string text = Last(r);
                int at = Array.FindIndex(names, n => string.Equals(n, text, StringComparison.OrdinalIgnoreCase));
                if (at < 0)
                {
                    r.AddError($"{name} must be {string.Join(", ", names[..^1])} or {names[^1]}, not '{Printable.Truncate(text)}'");
                    return null;
                }
                return values[at];
            },
        };
    }

    /// <summary>An enum value as the CLI writes it: <c>ProcessMode.Spawn</c> is <c>spawn</c>.</summary>
    public static string LowerName<T>(T value)
        where T : struct, Enum => value.ToString().ToLowerInvariant();

    private static string Last(ArgumentResult r) => r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
}
