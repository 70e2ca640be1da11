// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "NeuralKit",
    products: [
        .library(name: "NeuralKit", targets: ["NeuralKit"]),
        .executable(name: "neuralkit", targets: ["neuralkit"]),
    ],
    targets: [
        // OpenBLAS from Debian's libopenblas-dev (cblas.h, libopenblas.so).
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // zlib from Debian's zlib1g-dev, for reading the gzip-compressed IDX files.
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Cairo from Debian's libcairo2-dev, for drawing plots and reading and writing PNG files.
        .systemLibrary(
            name: "CCairo",
            path: "Sources/CCairo",
            pkgConfig: "cairo",
            providers: [.apt(["libcairo2-dev"])]
        ),
        // Memory-bound kernels (im2col, pooling) in C, where the compiler vectorizes them reliably.
        .target(
            name: "CNeuralKitKernels",
            path: "Sources/CNeuralKitKernels"
        ),
        .target(
            name: "NeuralKit",
            dependencies: ["COpenBLAS", "CZlib", "CCairo", "CNeuralKitKernels"]
        ),
        .executableTarget(
            name: "neuralkit",
            dependencies: ["NeuralKit"]
        ),
        .testTarget(
            name: "NeuralKitTests",
            dependencies: ["NeuralKit", "CCairo"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
