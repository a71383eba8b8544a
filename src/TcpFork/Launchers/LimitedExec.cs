using System.Globalization;

namespace TcpFork;

/// <summary>
/// A program with the <see cref="ChildLimits"/> it is given, and the last steps before its execvpe
/// (<see cref="Replace"/>): ExecHandler's child takes them itself; the TLS relay, which must stay outside
/// those limits, starts its program with <see cref="Start"/>.
/// <para>
/// Why not posix_spawn: it cannot set rlimits. Why not on the relay: a .NET process under a small
/// RLIMIT_AS fails its next mmap (the runtime reserves tens of GB), and RLIMIT_NOFILE and RLIMIT_NPROC
/// are meant for the program, not for the process serving TLS to it. Why not prlimit(2) on the spawned
/// pid: posix_spawn returns after the exec, so the program runs before its limits land. Something must
/// act between fork and exec, and it must be safe there:
/// </para>
/// <list type="bullet">
/// <item>Where this process is one thread (the fork-mode relay: a built-in child starts none, and its
/// parent forked it holding no lock: docs/fork-safety.md), <c>_Fork</c>, and the new child makes system
/// calls only (dup2, close_range, setrlimit, signal, sigprocmask, execvpe, write, _exit).</item>
/// <item>Otherwise (spawn mode: the runtime's finalizer thread, under the JIT the JIT's threads too) no
/// fork. There the child would run managed code while the runtime believes in threads it no longer has:
/// a P/Invoke's return (or a GC poll) waits for a GC another thread had begun at the fork, which no thread
/// will ever finish; a lock another thread held stays held; under the JIT, code pages are shared with the
/// parent. Instead this program runs again in a one-shot role (<see cref="RoleVariable"/>) that sets the
/// limits and execs the program, as a spawned exec child does without TLS: one more process start (about
/// 4 ms NativeAOT), only for TLS with --limit-* in spawn mode.</item>
/// </list>
/// Both ways report an exec failure as glibc's posix_spawn does: through a close-on-exec pipe, EOF when
/// the program runs, its errno when it could not, so the relay logs it as before.
/// </summary>
internal static unsafe class LimitedExec
{
    /// <summary>The one-shot role's variable: the limits (<see cref="ChildRole.EncodeLimits"/>); the program's argv follows, one variable each; the report pipe is on 3.</summary>
    public const string RoleVariable = ChildRole.Prefix + "LIMITED_EXEC";
    private const string ArgCountVariable = RoleVariable + "_ARGC";
    private const string ArgVariable = RoleVariable + "_ARG_";
    private const int ReportFd = 3;

    /// <summary>
    /// Starts <paramref name="program"/> with exactly <paramref name="env"/>, <paramref name="input"/> on 0,
    /// <paramref name="output"/> on 1, stderr inherited and nothing else, in this process's group, every
    /// signal default and none blocked, and <paramref name="limits"/>. Returns its pid, or -1 with
    /// <paramref name="error"/> when it could not be executed.
    /// </summary>
    public static int Start(ExecProgram program, List<string> env, int input, int output, ChildLimits limits, out Errno error)
    {
        if (!limits.Any)
        {
            return Spawn(NativeCommand.Program(program.File, program.Argv, env, 0), input, output, -1, out error);
        }
        int* report = stackalloc int[2];
        if (Interop.Pipe2(report, Interop.O_CLOEXEC) < 0)
        {
            throw Interop.Error("pipe2");
        }
        int pid;
        error = 0;
        if (Directory.GetDirectories("/proc/self/task").Length == 1)
        {
            using NativeCommand command = NativeCommand.Program(program.File, program.Argv, env, 0);
            pid = Interop.Fork();
            if (pid == 0)
            {
                RunForked(command, input, output, limits, report[1]);
            }
            error = pid < 0 ? Interop.LastError : 0;
        }
        else
        {
            string[] argv = program.Argv;
            List<string> role = [.. env.Where(e => !ChildRole.IsRoleVariable(e)), $"{RoleVariable}={ChildRole.EncodeLimits(limits)}",
                string.Create(CultureInfo.InvariantCulture, $"{ArgCountVariable}={argv.Length}")];
            role.AddRange(argv.Select((a, i) => string.Create(CultureInfo.InvariantCulture, $"{ArgVariable}{i}={a}")));
            pid = Spawn(NativeCommand.ThisProgram(role), input, output, report[1], out error);
        }
        Interop.Close(report[1]);
        if (pid > 0)
        {
            int code = 0;
            if (Interop.Read(report[0], (byte*)&code, sizeof(int)) == sizeof(int))
            {
                int status;
                while (Interop.Retry(Interop.WaitPid(pid, &status, 0)))
                {
                }
                (pid, error) = (-1, (Errno)code);
            }
        }
        Interop.Close(report[0]);
        return pid;
    }

    /// <summary>
    /// The last steps before the program, in the process that becomes it: the limits (last, with nothing
    /// left to allocate: RLIMIT_AS is the program's own, not this process's), every signal back to default,
    /// an empty mask, execvpe. Returns only when exec failed, with its errno.
    /// </summary>
    public static Errno Replace(NativeCommand command, ChildLimits limits)
    {
        limits.Apply(managedHandler: false);
        // An ignored signal stays ignored across exec (SIGPIPE is, in every .NET process): give the program defaults.
        for (int signal = 1; signal < 65; signal++)
        {
            if (signal is not (Interop.SIGKILL or 19))
            {
                Interop.Signal(signal, Interop.SIG_DFL);
            }
        }
        // And the mask, at the last moment before exec (as pal_process.c does): a blocked signal would survive it.
        SigSet none;
        Interop.SigEmptySet(&none);
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &none, null);
        Interop.Execvpe(command.Path, command.Argv, command.Envp);
        return Interop.LastError;
    }

    /// <summary>In the child <see cref="Start"/> forked: the streams, nothing else of the relay's, the limits, exec; never returns.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void RunForked(NativeCommand command, int input, int output, ChildLimits limits, int report)
    {
        Errno error;
        if (Interop.Dup2(input, 0) < 0 || Interop.Dup2(output, 1) < 0)
        {
            error = Interop.LastError;
        }
        else
        {
            // posix_spawn's closefrom(3), but keeping the report pipe until the exec. Where close_range
            // cannot mark (ENOSYS: Linux before 5.11) every descriptor of tcpfork's own is close-on-exec already.
            Interop.CloseRange(3, uint.MaxValue, Interop.CLOSE_RANGE_CLOEXEC);
            error = ReplaceOrErrno(command, limits);
        }
        Report(report, error);
        throw new InvalidOperationException("unreachable: _exit returned");
    }

    /// <summary>
    /// In a process of this program started as the one-shot role: true after the exec failed (reported to
    /// the relay; <paramref name="exitCode"/> 127); false (nothing done) elsewhere. On success it never returns.
    /// </summary>
    public static bool TryServeSpawned(out int exitCode)
    {
        exitCode = 127;
        string? limitsText = Environment.GetEnvironmentVariable(RoleVariable);
        if (limitsText is null)
        {
            return false;
        }
        int argc = int.Parse(Environment.GetEnvironmentVariable(ArgCountVariable) ?? "0", NumberStyles.None, CultureInfo.InvariantCulture);
        string[] argv = new string[argc];
        for (int i = 0; i < argc; i++)
        {
            argv[i] = Environment.GetEnvironmentVariable(string.Create(CultureInfo.InvariantCulture, $"{ArgVariable}{i}")) ?? "";
        }
        // The pipe must end at the exec (that EOF tells the relay the program runs): a close-on-exec copy.
        int report = Interop.DupCloseOnExec(ReportFd, ReportFd + 1);
        Interop.Close(ReportFd);
        using NativeCommand command = NativeCommand.Program(argv[0], argv, NativeCommand.Environ([]), 0);
        Report(report, ReplaceOrErrno(command, ChildRole.DecodeSettings(limitsText).Limits));
        return true;
    }

    private static Errno ReplaceOrErrno(NativeCommand command, ChildLimits limits)
    {
        try
        {
            return Replace(command, limits);
        }
#pragma warning disable CA1031 // Whatever failed before the exec is reported to the relay as an errno.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return e is SystemCallException s ? (Errno)s.Errno : Errno.EINVAL;
        }
    }

    /// <summary>Writes <paramref name="error"/> to the report pipe and ends this process (its limits may be the program's by now: nothing more may run).</summary>
    private static void Report(int report, Errno error)
    {
        int code = (int)error;
        Interop.Write(report, (byte*)&code, sizeof(int));
        Interop.Exit(127);
    }

    private static int Spawn(NativeCommand command, int input, int output, int report, out Errno error)
    {
        using (command)
        using (var spawn = new SpawnAttributes(ownGroup: false))
        {
            int pid;
            int rc = Interop.PosixSpawnP(&pid, command.Path, spawn.Streams(input, output, report), spawn.Attributes, command.Argv, command.Envp);
            spawn.Done();
            error = (Errno)rc;
            return rc == 0 ? pid : -1;
        }
    }
}
