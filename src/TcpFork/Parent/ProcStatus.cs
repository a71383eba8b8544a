using System.Globalization;

namespace TcpFork;

/// <summary>Fields of a <c>/proc/…/status</c> file, read at start-up (this allocates).</summary>
internal static class ProcStatus
{
    /// <summary>The hexadecimal mask <paramref name="field"/> (<c>SigBlk</c>, <c>CapEff</c>…) of <paramref name="statusFile"/>, or null when absent.</summary>
    public static ulong? HexField(string statusFile, string field)
    {
        string prefix = field + ":";
        foreach (string line in File.ReadLines(statusFile))
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal)
                && ulong.TryParse(line.AsSpan(prefix.Length).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong mask))
            {
                return mask;
            }
        }
        return null;
    }
}
