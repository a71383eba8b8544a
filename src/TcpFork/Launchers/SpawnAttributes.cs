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
    /// <param name="ownGroup">
    /// False: the child stays in its parent's process group — an upgrade's new parent, or a program the TLS
    /// relay child starts (the group the parent signals for timeouts and the drain is the relay child's).
    /// </param>
    public SpawnAttributes(bool ownGroup = true)
    {
        Attributes = NativeMemory.AllocZeroed(Interop.PosixSpawnAttrSize);
        FileActions = NativeMemory.AllocZeroed(Interop.PosixSpawnFileActionsSize);
        SigSet none, all;
        Interop.SigEmptySet(&none);
        Interop.SigFillSet(&all);
        Interop.PosixSpawnAttrInit(Attributes);
        Interop.PosixSpawnAttrSetFlags(Attributes, (short)((ownGroup ? Interop.POSIX_SPAWN_SETPGROUP : 0) | Interop.POSIX_SPAWN_SETSIGMASK | Interop.POSIX_SPAWN_SETSIGDEF));
        Interop.PosixSpawnAttrSetPGroup(Attributes, 0); // 0: a new group whose id is the child's pid
        Interop.PosixSpawnAttrSetSigMask(Attributes, &none);
        Interop.PosixSpawnAttrSetSigDefault(Attributes, &all);
    }

    public void* Attributes { get; }

    public void* FileActions { get; }

    /// <summary>Starts the file actions for one child: <paramref name="fd"/> duplicated onto each of <paramref name="targets"/>, everything above them and above stderr closed.</summary>
    public void* Connection(int fd, ReadOnlySpan<int> targets) => Connection(fd, targets, default);

    /// <summary>
    /// As <see cref="Connection(int, ReadOnlySpan{int})"/>, and <paramref name="also"/>'s descriptor onto its
    /// target (none when that is 0), which is above every target of <paramref name="fd"/>; its descriptor
    /// must be above that target too, so that no dup2 overwrites a descriptor still to be copied.
    /// </summary>
    public void* Connection(int fd, ReadOnlySpan<int> targets, (int Fd, int Target) also)
    {
        Interop.PosixSpawnFileActionsInit(FileActions);
        foreach (int target in targets)
        {
            Interop.PosixSpawnFileActionsAddDup2(FileActions, fd, target);
        }
        if (also.Target > 0)
        {
            Interop.PosixSpawnFileActionsAddDup2(FileActions, also.Fd, also.Target);
        }
        Interop.PosixSpawnFileActionsAddCloseFrom(FileActions, Math.Max(3, Math.Max(targets[^1], also.Target) + 1));
        return FileActions;
    }

    /// <summary>
    /// Starts the file actions for descriptors passed on (socket activation's layout): each of
    /// <paramref name="sources"/> duplicated onto 3, 4, …, everything above them closed. The sources must
    /// lie above that range (so no duplication overwrites one still to come).
    /// </summary>
    public void* Descriptors(ReadOnlySpan<int> sources)
    {
        Interop.PosixSpawnFileActionsInit(FileActions);
        for (int i = 0; i < sources.Length; i++)
        {
            Interop.PosixSpawnFileActionsAddDup2(FileActions, sources[i], 3 + i);
        }
        Interop.PosixSpawnFileActionsAddCloseFrom(FileActions, 3 + sources.Length);
        return FileActions;
    }

    /// <summary>
    /// Starts the file actions for one child: <paramref name="input"/> onto 0, <paramref name="output"/> onto 1,
    /// <paramref name="also"/> (when not -1) onto 3, everything above the last of them closed.
    /// </summary>
    public void* Streams(int input, int output, int also = -1)
    {
        Interop.PosixSpawnFileActionsInit(FileActions);
        Interop.PosixSpawnFileActionsAddDup2(FileActions, input, 0);
        Interop.PosixSpawnFileActionsAddDup2(FileActions, output, 1);
        if (also >= 0)
        {
            Interop.PosixSpawnFileActionsAddDup2(FileActions, also, 3);
        }
        Interop.PosixSpawnFileActionsAddCloseFrom(FileActions, also >= 0 ? 4 : 3);
        return FileActions;
    }

    /// <summary>Frees what <see cref="Connection(int, ReadOnlySpan{int}, ValueTuple{int, int})"/>, <see cref="Descriptors"/> or <see cref="Streams"/> made, after the spawn.</summary>
    public void Done() => Interop.PosixSpawnFileActionsDestroy(FileActions);

    public void Dispose()
    {
        NativeMemory.Free(Attributes);
        NativeMemory.Free(FileActions);
    }
}
