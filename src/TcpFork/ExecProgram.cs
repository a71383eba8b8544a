using System.Text;

namespace TcpFork;

/// <summary>A program to run per connection, tcpserver style: the connection on descriptors 0 and 1.</summary>
public sealed class ExecProgram
{
    /// <summary>The longest environment entry exec(2) accepts, <c>KEY=VALUE</c> and its NUL (Linux's MAX_ARG_STRLEN).</summary>
    internal const int MaxEntryBytes = 131072;

    /// <summary>Creates the description of <paramref name="file"/> (looked up in PATH) run with <paramref name="arguments"/>.</summary>
    public ExecProgram(string file, IEnumerable<string> arguments)
    {
        ArgumentException.ThrowIfNullOrEmpty(file);
        File = file;
        Arguments = [.. arguments];
    }

    /// <summary>The program, as given; looked up in PATH when it has no slash.</summary>
    public string File { get; }

    /// <summary>argv[1..].</summary>
    public IReadOnlyList<string> Arguments { get; }

    /// <summary>
    /// Extra environment variables (<c>KEY=VALUE</c>): each replaces a variable of the same name in
    /// tcpfork's own environment (a later entry replaces an earlier one). A UCSPI variable (PROTO,
    /// TCPREMOTEIP, …) cannot be set here. Defaults to none.
    /// </summary>
    public IList<string> Environment { get; } = new List<string>();

    /// <summary>The TCPLOCALHOST value (tcpserver's <c>-l</c>); no DNS lookup is ever made. Defaults to null (not set).</summary>
    public string? LocalName { get; set; }

    internal string[] Argv => [File, .. Arguments];

    /// <summary>
    /// tcpfork's environment less the per-connection names and less every name <see cref="Environment"/>
    /// sets, then <see cref="Environment"/> (the last entry for a name wins): one entry per name, so
    /// getenv sees the given value.
    /// </summary>
    internal IEnumerable<string> BaseEnvironment()
    {
        var given = new Dictionary<string, string>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (string entry in Environment)
        {
            string key = KeyOf(entry);
            if (!given.ContainsKey(key))
            {
                order.Add(key);
            }
            given[key] = entry;
        }
        return NativeCommand.Environ([.. UcspiEnvironment.Names, SignalMask.ReexecVariable, .. order])
            .Concat(order.Select(k => given[k]));
    }

    private static string KeyOf(string entry)
    {
        int eq = entry.IndexOf('=', StringComparison.Ordinal);
        return eq < 0 ? entry : entry[..eq];
    }

    /// <summary>Why <paramref name="entry"/> cannot be one of <see cref="Environment"/>, or null when it can.</summary>
    internal static string? CheckEnvironmentEntry(string entry)
    {
        int eq = entry.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0)
        {
            return $"'{Shorten(entry)}': expected KEY=VALUE";
        }
        string key = entry[..eq];
        if (UcspiEnvironment.Names.Contains(key, StringComparer.Ordinal))
        {
            return $"'{key}' is a UCSPI variable, set by tcpfork for each connection; it cannot be overridden";
        }
        if (entry.Contains('\0', StringComparison.Ordinal))
        {
            return $"'{key}': the value holds a NUL character";
        }
        int bytes = Encoding.UTF8.GetByteCount(entry) + 1;
        return bytes > MaxEntryBytes ? $"'{key}': {bytes - 1} bytes; an environment entry holds at most {MaxEntryBytes - 1}" : null;
    }

    /// <summary>Why <paramref name="name"/> cannot be the local name (it goes into TCPLOCALHOST and TCP6LOCALHOST), or null when it can.</summary>
    internal static string? CheckLocalName(string? name)
    {
        if (name is null)
        {
            return null;
        }
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            return "the local name holds a NUL character";
        }
        int max = MaxEntryBytes - "TCP6LOCALHOST=".Length - 1;
        int bytes = Encoding.UTF8.GetByteCount(name);
        return bytes > max ? $"the local name is {bytes} bytes; at most {max} fit in an environment variable" : null;
    }

    /// <summary>Throws <see cref="ArgumentException"/> for an <see cref="Environment"/> entry or a <see cref="LocalName"/> no program could be given.</summary>
    public void Validate()
    {
        foreach (string entry in Environment)
        {
            if (CheckEnvironmentEntry(entry) is { } reason)
            {
                throw new ArgumentException($"environment entry {reason}", nameof(Environment));
            }
        }
        if (CheckLocalName(LocalName) is { } why)
        {
            throw new ArgumentException(why, nameof(LocalName));
        }
    }

    private static string Shorten(string s) => s.Length <= 64 ? s : s[..64] + "…";
}
