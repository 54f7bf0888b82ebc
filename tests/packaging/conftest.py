def pytest_configure(config):
    config.addinivalue_line("markers", "packaging: builds and installs the Debian package (root, debhelper)")
