using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// tcpserver's model: posix_spawnp of the program with the connection on descriptors 0 and 1, stderr
/// inherited, everything else closed, signal mask empty and every disposition default, and the UCSPI
/// variables set. glibc spawns with CLONE_VFORK and reports the child's exec failure (ENOENT, EACCES…)
/// as the return value, through its own close-on-exec pipe, so the parent logs it and closes the
/// connection. The UCSPI entries are formatted into preallocated native memory: no allocation.
/// </summary>
internal sealed unsafe class ExecLauncher : ILauncher
{
    private readonly NativeCommand _command;
    private readonly ExecProgram _program;
    private readonly byte[] _localName;
    private readonly byte* _scratch;
    private readonly int _scratchSize;
    private readonly SpawnAttributes _spawn = new();

    public ExecLauncher(ExecProgram program)
    {
        _program = program;
        Action = "exec " + program.File;
        _command = NativeCommand.Program(program.File, program.Argv, program.BaseEnvironment(), UcspiEnvironment.MaxEntries);
        _localName = System.Text.Encoding.UTF8.GetBytes(program.LocalName ?? "");
        _scratchSize = UcspiEnvironment.BufferSize(_localName.Length);
        _scratch = (byte*)NativeMemory.AllocZeroed((nuint)_scratchSize);
    }

    public bool NeedsLocalAddress => true;

    public string Action { get; }

    public int Launch(int fd, in Accepted connection, out Errno error)
    {
        Span<int> starts = stackalloc int[UcspiEnvironment.MaxEntries];
        int n = UcspiEnvironment.Write(new Span<byte>(_scratch, _scratchSize), connection, _localName, starts);
        for (int i = 0; i < n; i++)
        {
            _command.EnvSlots[i] = _scratch + starts[i];
        }
        _command.EnvSlots[n] = null;

        int pid;
        int rc = Interop.PosixSpawnP(&pid, _command.Path, _spawn.Connection(fd, [0, 1]), _spawn.Attributes, _command.Argv, _command.Envp);
        _spawn.Done();
        error = (Errno)rc;
        return rc == 0 ? pid : -1;
    }

    public void Dispose()
    {
        _command.Dispose();
        NativeMemory.Free(_scratch);
        _spawn.Dispose();
    }
}
