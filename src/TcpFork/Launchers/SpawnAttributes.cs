using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// What every posix_spawn of tcpfork's gets: a process group of its own (the parent signals the group,
/// so what the child starts ends with it), an empty signal mask and every disposition back to default
/// (the parent's blocked mask would survive exec), and file actions rebuilt per child: the connection
/// onto the given descriptors, everything from the next one up closed.
/// </summary>
internal sealed unsafe class SpawnAttributes : IDisposable
{
    /// <param name="newGroup">
    /// False for a program the TLS relay child starts: it stays in the child's group, which is what the
    /// parent signals (timeouts, drain).
    /// </param>
    public SpawnAttributes(bool newGroup = true)
    {
        Attributes = NativeMemory.AllocZeroed(Interop.PosixSpawnAttrSize);
        FileActions = NativeMemory.AllocZeroed(Interop.PosixSpawnFileActionsSize);
        SigSet none, all;
        Interop.SigEmptySet(&none);
        Interop.SigFillSet(&all);
        Interop.PosixSpawnAttrInit(Attributes);
        Interop.PosixSpawnAttrSetFlags(Attributes, (short)((newGroup ? Interop.POSIX_SPAWN_SETPGROUP : 0) | Interop.POSIX_SPAWN_SETSIGMASK | Interop.POSIX_SPAWN_SETSIGDEF));
        Interop.PosixSpawnAttrSetPGroup(Attributes, 0); // 0: a new group whose id is the child's pid
        Interop.PosixSpawnAttrSetSigMask(Attributes, &none);
        Interop.PosixSpawnAttrSetSigDefault(Attributes, &all);
    }

    public void* Attributes { get; }

    public void* FileActions { get; }

    /// <summary>
    /// Starts the file actions for one child: <paramref name="fd"/> duplicated onto each of <paramref name="targets"/>,
    /// <paramref name="handOff"/> (when not -1) onto the descriptor after them, everything above and above stderr closed.
    /// </summary>
    public void* Connection(int fd, ReadOnlySpan<int> targets, int handOff = -1)
    {
        Interop.PosixSpawnFileActionsInit(FileActions);
        foreach (int target in targets)
        {
            Interop.PosixSpawnFileActionsAddDup2(FileActions, fd, target);
        }
        int next = targets[^1] + 1;
        if (handOff >= 0)
        {
            Interop.PosixSpawnFileActionsAddDup2(FileActions, handOff, next++);
        }
        Interop.PosixSpawnFileActionsAddCloseFrom(FileActions, Math.Max(3, next));
        return FileActions;
    }

    /// <summary>Starts the file actions for one child: <paramref name="input"/> onto 0, <paramref name="output"/> onto 1, everything above stderr closed.</summary>
    public void* Streams(int input, int output)
    {
        Interop.PosixSpawnFileActionsInit(FileActions);
        Interop.PosixSpawnFileActionsAddDup2(FileActions, input, 0);
        Interop.PosixSpawnFileActionsAddDup2(FileActions, output, 1);
        Interop.PosixSpawnFileActionsAddCloseFrom(FileActions, 3);
        return FileActions;
    }

    /// <summary>Frees what <see cref="Connection"/> or <see cref="Streams"/> made, after the spawn.</summary>
    public void Done() => Interop.PosixSpawnFileActionsDestroy(FileActions);

    public void Dispose()
    {
        NativeMemory.Free(Attributes);
        NativeMemory.Free(FileActions);
    }
}
