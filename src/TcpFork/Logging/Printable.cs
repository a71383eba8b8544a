namespace TcpFork;

/// <summary>Echoing bad input back in a one-line error: short, and with no control characters.</summary>
internal static class Printable
{
    public const int MaxLength = 120;

    /// <summary><paramref name="text"/> cut to <paramref name="maxLength"/> characters (with "…"), control characters as \xNN.</summary>
    public static string Truncate(string text, int maxLength = MaxLength)
    {
        var b = new System.Text.StringBuilder();
        foreach (char c in text.Length > maxLength ? text[..maxLength] : text)
        {
            b.Append(char.IsControl(c) ? $"\\x{(int)c:x2}" : c);
        }
        return text.Length > maxLength ? b.Append('…').ToString() : b.ToString();
    }
}
