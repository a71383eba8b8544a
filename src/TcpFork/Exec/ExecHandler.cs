namespace TcpFork;

/// <summary>
/// Runs the program from inside a tcpfork child, for when the child must act between fork and exec
/// (resource limits): the connection moves to 0 and 1, the UCSPI variables are set, the limits are
/// set as the program should have them, then execvpe. If exec fails the child logs the program and the
/// error and exits 127.
/// </summary>
internal sealed unsafe class ExecHandler
{
    private readonly ExecProgram _program;
    private readonly ChildLimits _limits;

    private ExecHandler(ExecProgram program, ChildLimits limits)
    {
        _program = program;
        _limits = limits;
    }

    public static ConnectionHandler For(ExecProgram program, ChildLimits limits) => new ExecHandler(program, limits).Exec;

    /// <summary>True for a handler made by <see cref="For"/>: it sets the child's limits itself (for a program, not for C#).</summary>
    public static bool Is(ConnectionHandler handler) => handler.Target is ExecHandler;

    private int Exec(Connection connection)
    {
        if (connection.IsTls)
        {
            return TlsRelay.Run(connection, _program, Environment(connection), _limits);
        }
        using NativeCommand command = NativeCommand.Program(_program.File, _program.Argv, Environment(connection), 0);
        int fd = connection.Handle;
        if (Interop.Dup2(fd, 0) < 0 || Interop.Dup2(fd, 1) < 0)
        {
            throw Interop.Error("dup2");
        }
        if (fd > 2)
        {
            Interop.Close(fd);
        }
        Errno error = LimitedExec.Replace(command, _limits);
        connection.Log.ExecFailed(_program.File, error);
        return 127;
    }

    /// <summary>The program's environment: tcpfork's own less the per-connection names, then the UCSPI variables.</summary>
    private List<string> Environment(Connection connection)
    {
        Accepted addresses = connection.Addresses;
        byte[] localName = System.Text.Encoding.UTF8.GetBytes(_program.LocalName ?? "");
        byte[] ucspi = new byte[UcspiEnvironment.BufferSize(localName.Length)];
        Span<int> starts = stackalloc int[UcspiEnvironment.MaxEntries];
        int n = UcspiEnvironment.Write(ucspi, addresses, localName, starts);
        var env = _program.BaseEnvironment().ToList();
        for (int i = 0; i < n; i++)
        {
            int end = Array.IndexOf(ucspi, (byte)0, starts[i]);
            env.Add(System.Text.Encoding.UTF8.GetString(ucspi, starts[i], end - starts[i]));
        }
        return env;
    }
}
