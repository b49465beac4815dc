/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.tsx?$': 'ts-jest' },
  // Synthesis with cdk-nag takes a few seconds per stack on a busy 2-core machine.
  testTimeout: 120000,
};
