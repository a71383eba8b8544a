using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// The platform's OpenSSL 3 (libssl.so.3, libcrypto.so.3: the libraries .NET's own TLS loads), for
/// tcpfork's own TLS services (<see cref="OpenSslContext"/>, <see cref="OpenSslSession"/>). Names and
/// values are OpenSSL 3.0's ABI; the <c>SSL_CTX_set_*</c> macros are <c>SSL_CTX_ctrl</c> calls.
/// </summary>
internal static unsafe partial class Interop
{
    internal const string LibSsl = "libssl.so.3", LibCrypto = "libcrypto.so.3";

    internal const int SSL_ERROR_NONE = 0, SSL_ERROR_SSL = 1, SSL_ERROR_WANT_READ = 2, SSL_ERROR_WANT_WRITE = 3,
        SSL_ERROR_SYSCALL = 5, SSL_ERROR_ZERO_RETURN = 6;

    internal const int SSL_CTRL_EXTRA_CHAIN_CERT = 14, SSL_CTRL_MODE = 33, SSL_CTRL_SET_READ_AHEAD = 41, SSL_CTRL_SET_SESS_CACHE_MODE = 44,
        SSL_CTRL_SET_TLSEXT_HOSTNAME = 55, SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59, SSL_CTRL_SET_MIN_PROTO_VERSION = 123, SSL_CTRL_SET_MAX_PROTO_VERSION = 124;

    internal const long SSL_MODE_ENABLE_PARTIAL_WRITE = 0x1, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = 0x2, SSL_MODE_RELEASE_BUFFERS = 0x10;

    internal const ulong SSL_OP_IGNORE_UNEXPECTED_EOF = 1UL << 7, SSL_OP_NO_RENEGOTIATION = 1UL << 30, SSL_OP_CIPHER_SERVER_PREFERENCE = 1UL << 22;

    internal const int TLS1_2_VERSION = 0x0303, TLS1_3_VERSION = 0x0304;

    internal const int SSL_VERIFY_PEER = 1, SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 2;

    internal const int SSL_TLSEXT_ERR_OK = 0, SSL_TLSEXT_ERR_NOACK = 3, OPENSSL_NPN_NEGOTIATED = 1;

    internal const int X509_V_OK = 0, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT = 2, X509_V_ERR_CERT_SIGNATURE_FAILURE = 7,
        X509_V_ERR_CERT_NOT_YET_VALID = 9, X509_V_ERR_CERT_HAS_EXPIRED = 10, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18,
        X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20,
        X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21, X509_V_ERR_INVALID_PURPOSE = 26, X509_V_ERR_CERT_UNTRUSTED = 27;

    // ---- libssl ----

    [LibraryImport(LibSsl, EntryPoint = "TLS_server_method")]
    internal static partial nint TlsServerMethod();

    [LibraryImport(LibSsl, EntryPoint = "TLS_client_method")]
    internal static partial nint TlsClientMethod();

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_new")]
    internal static partial nint SslCtxNew(nint method);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_free")]
    internal static partial void SslCtxFree(nint ctx);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_use_certificate")]
    internal static partial int SslCtxUseCertificate(nint ctx, nint x509);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_use_PrivateKey")]
    internal static partial int SslCtxUsePrivateKey(nint ctx, nint key);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_check_private_key")]
    internal static partial int SslCtxCheckPrivateKey(nint ctx);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_ctrl")]
    internal static partial nint SslCtxCtrl(nint ctx, int command, nint larg, void* parg);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_set_options")]
    internal static partial ulong SslCtxSetOptions(nint ctx, ulong options);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_set_verify")]
    internal static partial void SslCtxSetVerify(nint ctx, int mode, nint callback);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_set_session_id_context")]
    internal static partial int SslCtxSetSessionIdContext(nint ctx, byte* context, uint length);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_set_num_tickets")]
    internal static partial int SslCtxSetNumTickets(nint ctx, nuint count);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_get_cert_store")]
    internal static partial nint SslCtxGetCertStore(nint ctx);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_add_client_CA")]
    internal static partial int SslCtxAddClientCa(nint ctx, nint x509);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CTX_set_alpn_select_cb")]
    internal static partial void SslCtxSetAlpnSelectCallback(nint ctx,
        delegate* unmanaged<nint, byte**, byte*, byte*, uint, void*, int> callback, void* argument);

    [LibraryImport(LibSsl, EntryPoint = "SSL_select_next_proto")]
    internal static partial int SslSelectNextProto(byte** output, byte* outputLength, byte* server, uint serverLength, byte* client, uint clientLength);

    [LibraryImport(LibSsl, EntryPoint = "SSL_new")]
    internal static partial nint SslNew(nint ctx);

    [LibraryImport(LibSsl, EntryPoint = "SSL_free")]
    internal static partial void SslFree(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_ctrl")]
    internal static partial nint SslCtrl(nint ssl, int command, nint larg, void* parg);

    [LibraryImport(LibSsl, EntryPoint = "SSL_set_fd")]
    internal static partial int SslSetFd(nint ssl, int fd);

    [LibraryImport(LibSsl, EntryPoint = "SSL_set_bio")]
    internal static partial void SslSetBio(nint ssl, nint readBio, nint writeBio);

    [LibraryImport(LibSsl, EntryPoint = "SSL_set_accept_state")]
    internal static partial void SslSetAcceptState(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_set_connect_state")]
    internal static partial void SslSetConnectState(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_do_handshake", SetLastError = true)]
    internal static partial int SslDoHandshake(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_get_error")]
    internal static partial int SslGetError(nint ssl, int result);

    [LibraryImport(LibSsl, EntryPoint = "SSL_read", SetLastError = true)]
    internal static partial int SslRead(nint ssl, byte* buffer, int count);

    [LibraryImport(LibSsl, EntryPoint = "SSL_write", SetLastError = true)]
    internal static partial int SslWrite(nint ssl, byte* buffer, int count);

    [LibraryImport(LibSsl, EntryPoint = "SSL_shutdown", SetLastError = true)]
    internal static partial int SslShutdown(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_version")]
    internal static partial int SslVersion(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_get_current_cipher")]
    internal static partial nint SslGetCurrentCipher(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_CIPHER_get_protocol_id")]
    internal static partial uint SslCipherGetProtocolId(nint cipher);

    [LibraryImport(LibSsl, EntryPoint = "SSL_get_servername")]
    internal static partial byte* SslGetServerName(nint ssl, int type);

    [LibraryImport(LibSsl, EntryPoint = "SSL_get0_alpn_selected")]
    internal static partial void SslGet0AlpnSelected(nint ssl, byte** data, uint* length);

    [LibraryImport(LibSsl, EntryPoint = "SSL_get1_peer_certificate")]
    internal static partial nint SslGet1PeerCertificate(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_get_verify_result")]
    internal static partial nint SslGetVerifyResult(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_get1_session")]
    internal static partial nint SslGet1Session(nint ssl);

    [LibraryImport(LibSsl, EntryPoint = "SSL_set_session")]
    internal static partial int SslSetSession(nint ssl, nint session);

    [LibraryImport(LibSsl, EntryPoint = "SSL_SESSION_free")]
    internal static partial void SslSessionFree(nint session);

    [LibraryImport(LibSsl, EntryPoint = "SSL_session_reused")]
    internal static partial int SslSessionReused(nint ssl);

    // ---- libcrypto ----

    [LibraryImport(LibCrypto, EntryPoint = "BIO_new_mem_buf")]
    internal static partial nint BioNewMemBuf(byte* buffer, int length);

    [LibraryImport(LibCrypto, EntryPoint = "BIO_new_bio_pair")]
    internal static partial int BioNewBioPair(nint* bio1, nuint writeBuffer1, nint* bio2, nuint writeBuffer2);

    [LibraryImport(LibCrypto, EntryPoint = "BIO_free")]
    internal static partial int BioFree(nint bio);

    [LibraryImport(LibCrypto, EntryPoint = "PEM_read_bio_X509")]
    internal static partial nint PemReadBioX509(nint bio, nint reuse, nint passwordCallback, nint argument);

    [LibraryImport(LibCrypto, EntryPoint = "PEM_read_bio_PrivateKey")]
    internal static partial nint PemReadBioPrivateKey(nint bio, nint reuse, nint passwordCallback, nint argument);

    [LibraryImport(LibCrypto, EntryPoint = "X509_free")]
    internal static partial void X509Free(nint x509);

    [LibraryImport(LibCrypto, EntryPoint = "EVP_PKEY_free")]
    internal static partial void EvpPkeyFree(nint key);

    [LibraryImport(LibCrypto, EntryPoint = "i2d_X509")]
    internal static partial int I2dX509(nint x509, byte** output);

    [LibraryImport(LibCrypto, EntryPoint = "X509_STORE_add_cert")]
    internal static partial int X509StoreAddCert(nint store, nint x509);

    [LibraryImport(LibCrypto, EntryPoint = "X509_verify_cert_error_string")]
    internal static partial byte* X509VerifyCertErrorString(nint error);

    [LibraryImport(LibCrypto, EntryPoint = "ERR_get_error")]
    internal static partial nuint ErrGetError();

    [LibraryImport(LibCrypto, EntryPoint = "ERR_clear_error")]
    internal static partial void ErrClearError();

    [LibraryImport(LibCrypto, EntryPoint = "ERR_reason_error_string")]
    internal static partial byte* ErrReasonErrorString(nuint error);

    /// <summary>The reason of OpenSSL's oldest queued error (<c>wrong version number</c>), or null; the queue is emptied.</summary>
    internal static string? OpenSslError()
    {
        nuint first = ErrGetError();
        while (ErrGetError() != 0)
        {
        }
        if (first == 0)
        {
            return null;
        }
        byte* reason = ErrReasonErrorString(first);
        return reason == null ? $"OpenSSL error 0x{first:x}" : Marshal.PtrToStringUTF8((nint)reason);
    }
}
