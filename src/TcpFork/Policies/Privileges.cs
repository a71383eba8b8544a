namespace TcpFork;

/// <summary><see cref="TcpForkServerOptions.User"/>/<see cref="TcpForkServerOptions.Group"/> (<c>--user</c>/<c>--group</c>): the parent gives up root after binding, before any child runs.</summary>
internal static unsafe class Privileges
{
    public static void Drop(string? user, string? group)
    {
        if (user is null && group is null)
        {
            return;
        }
        uint? uid = null;
        uint gid;
        if (user is not null)
        {
            Interop.Passwd* pw = Interop.GetPwNam(user);
            if (pw == null)
            {
                throw new ArgumentException($"no such user '{user}'", nameof(TcpForkServerOptions.User));
            }
            uid = pw->Uid;
            gid = pw->Gid;
        }
        else
        {
            gid = 0;
        }
        if (group is not null)
        {
            Interop.Group* gr = Interop.GetGrNam(group);
            if (gr == null)
            {
                throw new ArgumentException($"no such group '{group}'", nameof(TcpForkServerOptions.Group));
            }
            gid = gr->Gid;
        }
        // Already this user and group, unprivileged: an upgrade's new parent (docs/upgrade.md), started by
        // a parent that had dropped them. Nothing to drop, and setgroups would fail without CAP_SETGID.
        if (Interop.GetEUid() != 0 && (uid is null || Interop.GetEUid() == uid) && Interop.GetEGid() == gid)
        {
            return;
        }
        // Order matters: supplementary groups and the gid while still root, the uid last.
        if (Interop.SetGroups(1, &gid) < 0)
        {
            Interop.Throw("setgroups");
        }
        if (Interop.SetGid(gid) < 0)
        {
            Interop.Throw("setgid");
        }
        if (uid is uint u && Interop.SetUid(u) < 0)
        {
            Interop.Throw("setuid");
        }
    }
}
