using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using TcpFork.Cli.Bench;

namespace TcpFork.Tests;

/// <summary>
/// Every struct layout and constant tcpfork declares for the kernel and glibc, checked against the C
/// headers of each architecture it supports: the test writes a C file of <c>const long</c> values,
/// compiles it to assembly with that architecture's gcc (the cross compiler for arm64: it need not run
/// the code) and reads the values back. A layout only x86-64 gets right fails here on arm64.
/// </summary>
public partial class InteropLayoutTests
{
    /// <summary>(C expression, what tcpfork uses on <paramref name="arch"/>).</summary>
    private static List<(string C, long Ours)> Facts(Architecture arch)
    {
        var facts = new List<(string, long)>
        {
            ("sizeof(struct epoll_event)", EpollEvent.LayoutOn(arch).Size),
            ("offsetof(struct epoll_event, data)", EpollEvent.LayoutOn(arch).DataOffset),
            ("sizeof(struct rlimit)", Marshal.SizeOf<Interop.RLimit>()),
            ("offsetof(struct rlimit, rlim_max)", Marshal.OffsetOf<Interop.RLimit>(nameof(Interop.RLimit.Max))),
            ("offsetof(struct passwd, pw_uid)", Marshal.OffsetOf<Interop.Passwd>(nameof(Interop.Passwd.Uid))),
            ("offsetof(struct passwd, pw_gid)", Marshal.OffsetOf<Interop.Passwd>(nameof(Interop.Passwd.Gid))),
            ("offsetof(struct group, gr_gid)", Marshal.OffsetOf<Interop.Group>(nameof(Interop.Group.Gid))),
            ("sizeof(struct iovec)", Marshal.SizeOf<BenchInterop.IoVec>()),
            ("sizeof(struct timeval)", BenchInterop.TimevalSize),
            ("sizeof(sigset_t)", Marshal.SizeOf<SigSet>()),
            ("sizeof(struct pollfd)", Marshal.SizeOf<Interop.PollFd>()),
            ("offsetof(struct pollfd, revents)", Marshal.OffsetOf<Interop.PollFd>(nameof(Interop.PollFd.Revents))),
            ("sizeof(struct signalfd_siginfo)", Interop.SignalFdInfoSize),
            ("sizeof(struct sockaddr_storage)", SockAddr.Capacity),
            ("offsetof(struct statx, stx_mode)", Marshal.OffsetOf<StatX>(nameof(StatX.Mode))),
            ("offsetof(struct statx, stx_ino)", Marshal.OffsetOf<StatX>(nameof(StatX.Inode))),
            ("offsetof(struct statx, stx_size)", Marshal.OffsetOf<StatX>(nameof(StatX.Size))),
            ("offsetof(struct statx, stx_dev_major)", Marshal.OffsetOf<StatX>(nameof(StatX.DevMajor))),
            ("offsetof(struct statx, stx_dev_minor)", Marshal.OffsetOf<StatX>(nameof(StatX.DevMinor))),
            ("sizeof(struct statx)", Marshal.SizeOf<StatX>()),
            ("offsetof(struct tcp_info, tcpi_last_data_sent)", Interop.TcpInfoLastDataSent),
            ("offsetof(struct tcp_info, tcpi_last_data_recv)", Interop.TcpInfoLastDataRecv),
            ("sizeof(struct ucred)", Marshal.SizeOf<Interop.UCred>()),
            ("offsetof(struct ucred, uid)", Marshal.OffsetOf<Interop.UCred>(nameof(Interop.UCred.Uid))),
            ("SO_PEERCRED", Interop.SO_PEERCRED), ("FIONREAD", Interop.FIONREAD),
            ("O_CLOEXEC", Interop.O_CLOEXEC), ("O_NONBLOCK", Interop.O_NONBLOCK), ("F_SETPIPE_SZ", BenchInterop.F_SETPIPE_SZ),
            ("EPOLL_CLOEXEC", Interop.EPOLL_CLOEXEC), ("EPOLL_CTL_ADD", Interop.EPOLL_CTL_ADD), ("EPOLL_CTL_DEL", Interop.EPOLL_CTL_DEL),
            ("EPOLL_CTL_MOD", Interop.EPOLL_CTL_MOD), ("EPOLLIN", Interop.EPOLLIN),
            ("WNOHANG", Interop.WNOHANG), ("POLLIN", Interop.POLLIN), ("POLLOUT", Interop.POLLOUT),
            ("PROT_READ", Interop.PROT_READ), ("PROT_WRITE", Interop.PROT_WRITE), ("MAP_PRIVATE", Interop.MAP_PRIVATE),
            ("MAP_FIXED", Interop.MAP_FIXED), ("MAP_ANONYMOUS", Interop.MAP_ANONYMOUS), ("MFD_CLOEXEC", Interop.MFD_CLOEXEC),
            ("MADV_WIPEONFORK", Interop.MADV_WIPEONFORK),
            ("RLIMIT_CPU", Interop.RLIMIT_CPU), ("RLIMIT_NPROC", Interop.RLIMIT_NPROC), ("RLIMIT_NOFILE", Interop.RLIMIT_NOFILE), ("RLIMIT_AS", Interop.RLIMIT_AS),
            ("SIGHUP", Interop.SIGHUP), ("SIGINT", Interop.SIGINT), ("SIGQUIT", Interop.SIGQUIT), ("SIGKILL", Interop.SIGKILL),
            ("SIGPIPE", Interop.SIGPIPE), ("SIGTERM", Interop.SIGTERM), ("SIGCHLD", Interop.SIGCHLD),
            ("SIG_BLOCK", Interop.SIG_BLOCK), ("SIG_UNBLOCK", Interop.SIG_UNBLOCK), ("SIG_SETMASK", Interop.SIG_SETMASK),
            ("SFD_NONBLOCK", Interop.SFD_NONBLOCK), ("SFD_CLOEXEC", Interop.SFD_CLOEXEC),
            ("AF_UNIX", Interop.AF_UNIX), ("AF_INET", Interop.AF_INET), ("AF_INET6", Interop.AF_INET6),
            ("SOCK_STREAM", Interop.SOCK_STREAM), ("SOCK_NONBLOCK", Interop.SOCK_NONBLOCK), ("SOCK_CLOEXEC", Interop.SOCK_CLOEXEC),
            ("SOL_SOCKET", Interop.SOL_SOCKET), ("SO_REUSEADDR", Interop.SO_REUSEADDR), ("SO_REUSEPORT", Interop.SO_REUSEPORT), ("SO_TYPE", Interop.SO_TYPE), ("SO_ACCEPTCONN", Interop.SO_ACCEPTCONN), ("SO_KEEPALIVE", Interop.SO_KEEPALIVE),
            ("SO_ATTACH_FILTER", Interop.SO_ATTACH_FILTER), ("SO_RCVTIMEO", BenchInterop.SO_RCVTIMEO), ("SO_SNDTIMEO", BenchInterop.SO_SNDTIMEO),
            ("IPPROTO_IPV6", Interop.IPPROTO_IPV6), ("IPV6_V6ONLY", Interop.IPV6_V6ONLY), ("IPPROTO_TCP", Interop.IPPROTO_TCP),
            ("TCP_INFO", Interop.TCP_INFO), ("TCP_KEEPIDLE", Interop.TCP_KEEPIDLE), ("TCP_KEEPINTVL", Interop.TCP_KEEPINTVL),
            ("TCP_KEEPCNT", Interop.TCP_KEEPCNT), ("SHUT_WR", Interop.SHUT_WR), ("MSG_NOSIGNAL", Interop.MSG_NOSIGNAL),
            ("MSG_DONTWAIT", Interop.MSG_DONTWAIT), ("ECONNREFUSED", BenchInterop.ECONNREFUSED), ("SPLICE_F_MOVE", Interop.SPLICE_F_MOVE),
            ("AT_FDCWD", Interop.AT_FDCWD), ("AT_SYMLINK_NOFOLLOW", Interop.AT_SYMLINK_NOFOLLOW), ("AT_EMPTY_PATH", Interop.AT_EMPTY_PATH),
            ("STATX_BASIC_STATS", Interop.STATX_BASIC_STATS),
        };
        facts.AddRange(Enum.GetValues<Errno>().Select(e => (e.ToString(), (long)e)));
        return facts;
    }

    /// <summary>
    /// OpenSSL 3's constants (the SSL_CTX_set_* macros' control numbers, option bits, error codes): the same
    /// on every architecture, so checked with the native compiler and the platform's headers (libssl-dev).
    /// </summary>
    private static readonly (string C, long Ours)[] s_openSsl =
    [
        ("SSL_ERROR_NONE", Interop.SSL_ERROR_NONE), ("SSL_ERROR_SSL", Interop.SSL_ERROR_SSL), ("SSL_ERROR_WANT_READ", Interop.SSL_ERROR_WANT_READ),
        ("SSL_ERROR_WANT_WRITE", Interop.SSL_ERROR_WANT_WRITE), ("SSL_ERROR_SYSCALL", Interop.SSL_ERROR_SYSCALL), ("SSL_ERROR_ZERO_RETURN", Interop.SSL_ERROR_ZERO_RETURN),
        ("SSL_CTRL_EXTRA_CHAIN_CERT", Interop.SSL_CTRL_EXTRA_CHAIN_CERT), ("SSL_CTRL_MODE", Interop.SSL_CTRL_MODE), ("SSL_CTRL_SET_READ_AHEAD", Interop.SSL_CTRL_SET_READ_AHEAD),
        ("SSL_CTRL_SET_SESS_CACHE_MODE", Interop.SSL_CTRL_SET_SESS_CACHE_MODE), ("SSL_CTRL_SET_TLSEXT_HOSTNAME", Interop.SSL_CTRL_SET_TLSEXT_HOSTNAME),
        ("SSL_CTRL_SET_TLSEXT_TICKET_KEYS", Interop.SSL_CTRL_SET_TLSEXT_TICKET_KEYS), ("SSL_CTRL_SET_MIN_PROTO_VERSION", Interop.SSL_CTRL_SET_MIN_PROTO_VERSION),
        ("SSL_CTRL_SET_MAX_PROTO_VERSION", Interop.SSL_CTRL_SET_MAX_PROTO_VERSION),
        ("SSL_MODE_ENABLE_PARTIAL_WRITE", Interop.SSL_MODE_ENABLE_PARTIAL_WRITE), ("SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER", Interop.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER),
        ("SSL_MODE_RELEASE_BUFFERS", Interop.SSL_MODE_RELEASE_BUFFERS), ("SSL_SESS_CACHE_OFF", 0),
        ("SSL_OP_IGNORE_UNEXPECTED_EOF", (long)Interop.SSL_OP_IGNORE_UNEXPECTED_EOF), ("SSL_OP_NO_RENEGOTIATION", (long)Interop.SSL_OP_NO_RENEGOTIATION),
        ("SSL_OP_CIPHER_SERVER_PREFERENCE", (long)Interop.SSL_OP_CIPHER_SERVER_PREFERENCE),
        ("TLS1_2_VERSION", Interop.TLS1_2_VERSION), ("TLS1_3_VERSION", Interop.TLS1_3_VERSION),
        ("SSL_VERIFY_PEER", Interop.SSL_VERIFY_PEER), ("SSL_VERIFY_FAIL_IF_NO_PEER_CERT", Interop.SSL_VERIFY_FAIL_IF_NO_PEER_CERT),
        ("SSL_TLSEXT_ERR_OK", Interop.SSL_TLSEXT_ERR_OK), ("SSL_TLSEXT_ERR_NOACK", Interop.SSL_TLSEXT_ERR_NOACK), ("OPENSSL_NPN_NEGOTIATED", Interop.OPENSSL_NPN_NEGOTIATED),
        ("TLSEXT_NAMETYPE_host_name", 0), ("X509_V_OK", Interop.X509_V_OK),
        ("X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT", Interop.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT), ("X509_V_ERR_CERT_SIGNATURE_FAILURE", Interop.X509_V_ERR_CERT_SIGNATURE_FAILURE),
        ("X509_V_ERR_CERT_NOT_YET_VALID", Interop.X509_V_ERR_CERT_NOT_YET_VALID), ("X509_V_ERR_CERT_HAS_EXPIRED", Interop.X509_V_ERR_CERT_HAS_EXPIRED),
        ("X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT", Interop.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT), ("X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN", Interop.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN),
        ("X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY", Interop.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
        ("X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE", Interop.X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE),
        ("X509_V_ERR_INVALID_PURPOSE", Interop.X509_V_ERR_INVALID_PURPOSE), ("X509_V_ERR_CERT_UNTRUSTED", Interop.X509_V_ERR_CERT_UNTRUSTED),
    ];

    [Fact]
    public void Every_OpenSSL_constant_matches_the_platform_headers()
    {
        string? gcc = Run.Which("gcc");
        Assert.True(gcc is not null, "gcc is not installed (.ci/run installs it)");
        Assert.True(File.Exists("/usr/include/openssl/ssl.h"), "OpenSSL's headers are not installed (.ci/run installs libssl-dev)");
        long[] c = Evaluate(gcc!, [.. s_openSsl.Select(f => f.C)], "#include <openssl/ssl.h>\n#include <openssl/x509_vfy.h>\n");
        string[] wrong = [.. s_openSsl.Select((f, i) => (f, i)).Where(x => c[x.i] != x.f.Ours).Select(x => $"{x.f.C}: OpenSSL says {c[x.i]}, tcpfork uses {x.f.Ours}")];
        Assert.True(wrong.Length == 0, string.Join("; ", wrong));
    }

    /// <summary>Opaque glibc types tcpfork only reserves room for: room at least as large as C's.</summary>
    private static readonly (string C, long Room)[] s_room =
    [
        ("sizeof(posix_spawnattr_t)", Interop.PosixSpawnAttrSize),
        ("sizeof(posix_spawn_file_actions_t)", Interop.PosixSpawnFileActionsSize),
        ("sizeof(struct tcp_info)", Interop.TcpInfoSize),
    ];

    private const string Headers = """
        #define _GNU_SOURCE
        #include <errno.h>
        #include <fcntl.h>
        #include <grp.h>
        #include <netinet/in.h>
        #include <netinet/tcp.h>
        #include <poll.h>
        #include <pwd.h>
        #include <signal.h>
        #include <spawn.h>
        #include <stddef.h>
        #include <sys/epoll.h>
        #include <sys/ioctl.h>
        #include <sys/mman.h>
        #include <sys/resource.h>
        #include <sys/signalfd.h>
        #include <sys/socket.h>
        #include <sys/stat.h>
        #include <sys/time.h>
        #include <sys/uio.h>
        #include <sys/wait.h>
        """;

    public static TheoryData<string, Architecture> Compilers() => new()
    {
        { "gcc", Architecture.X64 },
        { "aarch64-linux-gnu-gcc", Architecture.Arm64 },
    };

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Every_layout_and_constant_matches_the_C_headers(string compiler, Architecture arch)
    {
        Assert.True(compiler != "gcc" || RuntimeInformation.ProcessArchitecture == Architecture.X64, "the native compiler's facts are x86-64's here");
        string? gcc = Run.Which(compiler);
        Assert.True(gcc is not null, $"{compiler} is not installed (.ci/run installs gcc and gcc-aarch64-linux-gnu)");
        List<(string C, long Ours)> facts = Facts(arch);
        long[] c = Evaluate(gcc!, [.. facts.Select(f => f.C), .. s_room.Select(r => r.C)]);
        var wrong = new List<string>();
        for (int i = 0; i < facts.Count; i++)
        {
            if (c[i] != facts[i].Ours)
            {
                wrong.Add($"{facts[i].C}: C says {c[i]}, tcpfork uses {facts[i].Ours}");
            }
        }
        for (int i = 0; i < s_room.Length; i++)
        {
            if (c[facts.Count + i] > s_room[i].Room)
            {
                wrong.Add($"{s_room[i].C}: C needs {c[facts.Count + i]}, tcpfork reserves {s_room[i].Room}");
            }
        }
        Assert.True(wrong.Count == 0, $"on {arch}: " + string.Join("; ", wrong));
    }

    /// <summary>The values of <paramref name="expressions"/> as <paramref name="gcc"/>'s target computes them.</summary>
    private static long[] Evaluate(string gcc, IReadOnlyList<string> expressions, string headers = Headers)
    {
        string dir = Directory.CreateTempSubdirectory("tcpfork-layout-").FullName;
        try
        {
            var source = new StringBuilder(headers).Append('\n');
            for (int i = 0; i < expressions.Count; i++)
            {
                source.Append(CultureInfo.InvariantCulture, $"const long tcpfork_{i} = (long)({expressions[i]});\n");
            }
            string c = Path.Combine(dir, "layout.c"), s = Path.Combine(dir, "layout.s");
            File.WriteAllText(c, source.ToString());
            (int code, _, string stderr) = Run.Command(gcc, "-S", "-O0", "-o", s, c);
            Assert.True(code == 0, $"{gcc}: {stderr}");
            var values = new Dictionary<int, long>();
            foreach (Match m in Constant().Matches(File.ReadAllText(s)))
            {
                // A zero is emitted as ".zero 8".
                values[int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)] = m.Groups[2].Success ? long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) : 0;
            }
            return [.. Enumerable.Range(0, expressions.Count).Select(i => values.TryGetValue(i, out long v) ? v : throw new InvalidDataException($"no value for {expressions[i]} in {gcc}'s output"))];
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [GeneratedRegex(@"^tcpfork_(\d+):\s*\n\s*\.(?:(?:quad|xword|8byte)\s+(-?\d+)|zero\s+8)", RegexOptions.Multiline)]
    private static partial Regex Constant();
}
