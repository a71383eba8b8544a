namespace TcpFork;

/// <summary>
/// What the TLS files were when last read, so that a SIGHUP (which also asks for the stats line) re-reads
/// and re-parses them, and runs the warm-up again, only when one changed. One statx each, following
/// symlinks (a certbot-style link switched to a new file counts): device, inode, size, and modification
/// and change times to the nanosecond. A renewal renamed over the file changes the inode, one rewritten in
/// place its change time. The paths are made NUL-terminated once, so a check allocates nothing.
/// </summary>
internal sealed class TlsFileStamps
{
    private readonly byte[][] _paths;
    private readonly StatX[] _taken;
    private readonly StatX[] _read;
    private bool _takenAll;
    private bool _readAny;

    public TlsFileStamps(TlsOptions options)
    {
        string[] paths = options.ClientCaFile is null ? [options.CertificateFile, options.KeyFile] : [options.CertificateFile, options.KeyFile, options.ClientCaFile];
        _paths = [.. paths.Select(p => System.Text.Encoding.UTF8.GetBytes(p + "\0"))];
        _taken = new StatX[_paths.Length];
        _read = new StatX[_paths.Length];
    }

    /// <summary>
    /// Stats every file now (before reading them, so that a change while they are read shows next time);
    /// true when each is as it was at the last <see cref="Commit"/>. A file that cannot be stat'ed counts as changed.
    /// </summary>
    public bool Unchanged()
    {
        bool same = _readAny;
        _takenAll = true;
        for (int i = 0; i < _paths.Length; i++)
        {
            if (!Interop.TryStat(_paths[i], followLinks: true, out _taken[i]))
            {
                _takenAll = false;
                same = false;
            }
            else if (!_taken[i].SameVersion(_read[i]))
            {
                same = false;
            }
        }
        return same;
    }

    /// <summary>The files as stat'ed by the last <see cref="Unchanged"/> were read and parsed.</summary>
    public void Commit()
    {
        if (_takenAll)
        {
            _taken.CopyTo(_read, 0);
            _readAny = true;
        }
    }
}
