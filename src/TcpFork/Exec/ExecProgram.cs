namespace TcpFork;

/// <summary>A program to run per connection, tcpserver style: the connection on descriptors 0 and 1.</summary>
public sealed class ExecProgram
{
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

    /// <summary>Extra environment variables (<c>KEY=VALUE</c>), after tcpfork's own environment. Defaults to none.</summary>
    public IList<string> Environment { get; } = new List<string>();

    /// <summary>The TCPLOCALHOST value (tcpserver's <c>-l</c>); no DNS lookup is ever made. Defaults to null (not set).</summary>
    public string? LocalName { get; set; }

    internal string[] Argv => [File, .. Arguments];

    /// <summary>tcpfork's environment less the per-connection names, plus <see cref="Environment"/>.</summary>
    internal IEnumerable<string> BaseEnvironment() =>
        NativeCommand.Environ([.. UcspiEnvironment.Names, ChildRole.FdVariable, ChildRole.ConnectionVariable, ChildRole.FromSameIpVariable, SignalMask.ReexecVariable])
            .Concat(Environment);
}
