using System.Buffers.Text;
using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// posix_spawn(3) of this same program in the hidden child role: the connection is duplicated onto
/// descriptor 3, every other descriptor above 2 is closed, the signal mask is emptied and every
/// disposition reset. Safe under JIT: glibc spawns with CLONE_VFORK and no managed code runs between
/// clone and exec. The command is built once in native memory; per connection only the connection
/// number in its environment is rewritten.
/// </summary>
internal sealed unsafe class SpawnLauncher : ILauncher
{
    private const int NumberDigits = 20;
    private readonly NativeCommand _command;
    private readonly void* _attr;
    private readonly void* _fileActions;

    public SpawnLauncher(TcpForkServerOptions options)
    {
        _command = NativeCommand.ThisProgram(
            remove: [ChildRole.FdVariable, ChildRole.ConnectionVariable, ChildRole.FromSameIpVariable, ChildRole.SettingsVariable, SignalMask.ReexecVariable],
            add: [$"{ChildRole.FdVariable}={ChildRole.InheritedFd}", $"{ChildRole.SettingsVariable}={ChildRole.EncodeSettings(options)}", $"{ChildRole.ConnectionVariable}={new string('0', NumberDigits)}",
                  $"{ChildRole.FromSameIpVariable}={new string('0', NumberDigits)}"]);
        _attr = NativeMemory.AllocZeroed(Interop.PosixSpawnAttrSize);
        _fileActions = NativeMemory.AllocZeroed(Interop.PosixSpawnFileActionsSize);
        SigSet none, all;
        Interop.SigEmptySet(&none);
        Interop.SigFillSet(&all);
        Interop.PosixSpawnAttrInit(_attr);
        Interop.PosixSpawnAttrSetFlags(_attr, Interop.POSIX_SPAWN_SETSIGMASK | Interop.POSIX_SPAWN_SETSIGDEF);
        Interop.PosixSpawnAttrSetSigMask(_attr, &none);
        Interop.PosixSpawnAttrSetSigDefault(_attr, &all);
    }

    public string Name => "spawn";

    public int Launch(int fd, in Accepted connection, out Errno error)
    {
        var digits = new System.Buffers.StandardFormat('D', NumberDigits);
        Utf8Formatter.TryFormat(connection.Number, _command.ValueOf(ChildRole.ConnectionVariable), out _, digits);
        Utf8Formatter.TryFormat(connection.FromSameIp, _command.ValueOf(ChildRole.FromSameIpVariable), out _, digits);

        Interop.PosixSpawnFileActionsInit(_fileActions);
        Interop.PosixSpawnFileActionsAddDup2(_fileActions, fd, ChildRole.InheritedFd);
        Interop.PosixSpawnFileActionsAddCloseFrom(_fileActions, ChildRole.InheritedFd + 1);
        int pid;
        int rc = Interop.PosixSpawn(&pid, _command.Path, _fileActions, _attr, _command.Argv, _command.Envp);
        Interop.PosixSpawnFileActionsDestroy(_fileActions);
        error = (Errno)rc;
        return rc == 0 ? pid : -1;
    }

    public void Dispose()
    {
        _command.Dispose();
        NativeMemory.Free(_attr);
        NativeMemory.Free(_fileActions);
    }
}
