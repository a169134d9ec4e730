// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A throwaway certificate for TLS tests, made in-process at test time (no
// private key is ever committed): a self-signed EC P-256 certificate for
// 127.0.0.1 and localhost, written as PEM into a fresh temporary directory
// that is removed when the TestCert goes.
#pragma once

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>

namespace wsguard::test {

class TestCert {
public:
    TestCert() {
        std::random_device rd;
        dir_ = std::filesystem::temp_directory_path() /
               ("wsguard-tls-" + std::to_string(rd()) + "-" +
                std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
        std::filesystem::create_directory(dir_);
        std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(make_key(), &EVP_PKEY_free);
        std::unique_ptr<X509, decltype(&X509_free)> cert(make_cert(key.get()), &X509_free);
        write(cert_path(), [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
        write(key_path(), [&](FILE* f) {
            return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        });
    }
    TestCert(const TestCert&) = delete;
    TestCert& operator=(const TestCert&) = delete;
    ~TestCert() {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    std::string cert_path() const { return (dir_ / "cert.pem").string(); }
    std::string key_path() const { return (dir_ / "key.pem").string(); }
    /// A path in the directory for a test's own file.
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    /// Writes `text` to path(name) and returns that path.
    std::string write_file(const std::string& name, const std::string& text) const {
        std::ofstream(path(name), std::ios::binary) << text;
        return path(name);
    }

private:
    static EVP_PKEY* make_key() {
        EVP_PKEY* key = nullptr;
        std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
            EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr), &EVP_PKEY_CTX_free);
        if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
            EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1) != 1 ||
            EVP_PKEY_keygen(ctx.get(), &key) != 1) {
            throw std::runtime_error("test cert: EC key generation failed");
        }
        return key;
    }

    static X509* make_cert(EVP_PKEY* key) {
        X509* cert = X509_new();
        if (cert == nullptr) {
            throw std::runtime_error("test cert: X509_new failed");
        }
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
        X509_gmtime_adj(X509_getm_notAfter(cert), 7L * 24 * 3600);
        X509_set_pubkey(cert, key);
        X509_NAME* name = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(cert, name);
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
        X509_EXTENSION* san =
            X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
        if (san == nullptr || X509_add_ext(cert, san, -1) != 1 ||
            X509_sign(cert, key, EVP_sha256()) == 0) {
            X509_EXTENSION_free(san);
            X509_free(cert);
            throw std::runtime_error("test cert: signing failed");
        }
        X509_EXTENSION_free(san);
        return cert;
    }

    template <class Write>
    static void write(const std::string& path, Write w) {
        FILE* f = std::fopen(path.c_str(), "wb");
        if (f == nullptr) {
            throw std::runtime_error("test cert: cannot write " + path);
        }
        const int ok = w(f);
        std::fclose(f);
        if (ok != 1) {
            throw std::runtime_error("test cert: PEM write failed for " + path);
        }
    }

    std::filesystem::path dir_;
};

}  // namespace wsguard::test
